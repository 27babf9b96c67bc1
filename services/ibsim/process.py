"""Run ``python -m ibsim`` as a separate process (integration tests, the benchmark, scripts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from ibsim.control import control_request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimulatorProcess:
    """Start on enter, SIGTERM on exit. Ports are picked free unless given in ``env``.

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
        self.port = int(extra.setdefault("IBSIM_PORT", str(free_port())))
        self.control_port = int(extra.setdefault("IBSIM_CONTROL_PORT", str(free_port())))
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
