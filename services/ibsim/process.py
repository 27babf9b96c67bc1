"""Run ``python -m ibsim`` as a separate process (integration tests, the benchmark, scripts)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from ibsim.control import control_request

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below the kernel's ephemeral range (Linux: 32768-60999) and below the tests' allocator
# (tests/conftest.py: 20000-32000), so neither an outbound connection nor a test takes these.
DEFAULT_PORT_STRETCH = (10000, 20000)


def ephemeral_port_low(range_file: Path = EPHEMERAL_RANGE_FILE) -> int:
    """The lowest port the kernel hands out for port 0 and outbound connections (32768 when the
    range cannot be read, Linux's default)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, stretch: tuple[int, int] = DEFAULT_PORT_STRETCH) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1, free now, below the ephemeral range.

    ``bind(port 0)`` picks from the ephemeral range, where an outbound connection can take the
    port before the simulator binds it ("address already in use" at its start, seen in the
    stability loop). Here the walk starts at a random offset, a probe bind skips ports something
    holds, and the probes stay bound until all ``count`` are found, so one call never returns a
    port twice. A port handed out but not bound yet is invisible to the probe: ask for every
    port a set-up needs in one call. Two calls overlap only if their random windows do (about
    2 * count / 10,000 for the default stretch; a pid-derived start, used before, made two calls
    in one process return the same ports every time: a benchmark's private bus and its
    simulator collided)."""
    if count <= 0:
        return []
    low, high = stretch
    high = min(high, ephemeral_port_low())
    if high - low < count:
        raise RuntimeError(f"no room for {count} ports in {low}-{high} below the ephemeral range")
    span = high - low
    start = random.SystemRandom().randrange(span)
    held: list[socket.socket] = []
    try:
        for step in range(span):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", low + (start + step) % span))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            if len(held) == count:
                return [int(s.getsockname()[1]) for s in held]
        raise RuntimeError(f"fewer than {count} free ports in {low}-{high}")
    finally:
        for sock in held:
            sock.close()


class SimulatorProcess:
    """Start on enter, SIGTERM on exit. Ports are picked free below the kernel's ephemeral range
    (``free_ports``) unless given in ``env``.

    with SimulatorProcess({"IBSIM_STATE_DIR": "/tmp/s"}) as sim:
        ib.connect("127.0.0.1", sim.port, clientId=1)
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        extra = dict(env or {})
        missing = [key for key in ("IBSIM_PORT", "IBSIM_CONTROL_PORT") if key not in extra]
        for key, port in zip(missing, free_ports(len(missing)), strict=True):
            extra[key] = str(port)
        self.port = int(extra["IBSIM_PORT"])
        self.control_port = int(extra["IBSIM_CONTROL_PORT"])
        extra.setdefault("IBSIM_PRICE_SOURCE", "none")
        self.env = {**os.environ, **extra}
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> SimulatorProcess:
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ibsim"],
            env=self.env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ibsim exited at start with code {self.proc.returncode}")
            try:
                if control_request(self.control_port, {"cmd": "ping"}, timeout_s=1.0)["ok"]:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("ibsim did not become ready")
            time.sleep(0.05)

    def control(self, payload: dict[str, object]) -> dict[str, object]:
        return control_request(self.control_port, payload)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
