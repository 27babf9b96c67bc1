"""`make run`: every service as its own local process on one real ZeroMQ bus.

Starts the bus forwarder, the IB gateway simulator, marketdata, inference, execution, monitor and
trainer; prefixes each line of their JSON logs with the service name. If one dies, the others are
stopped too.

Stopping (Ctrl-C or SIGTERM): every service's process group gets SIGTERM at once, their output is
still read while they shut down (a full pipe must not block a service's exit), and whatever is
left after ``RUN_STOP_TIMEOUT_S`` (4 s) gets SIGKILL, named in the output; a second Ctrl-C kills
at once. So `make run` is gone within about 5 s of Ctrl-C.

Market data comes through the TWS API (``MARKETDATA_SOURCE=ib``) from the simulator, which
replays the packaged history as the market (``IBSIM_PRICE_SOURCE=replay``); see ``STATE_DEFAULTS``.

State lives under ``var/`` like the Docker stack's volumes: ledger (``var/ledger``), marketdata's
epoch, quarantine and bar store (``var/marketdata``), order journal (``var/execution``), the
simulator's executions and account (``var/ibsim``) and the bus secret (``var/secrets``). A
second `make run` resumes from it; ``make reset`` clears it (keeping the secret, models and
results).

``RUN_SKIP=trainer,monitor`` leaves services out. ``IB_HOST``/``IB_PORT`` (a real TWS / IB
Gateway) leave the simulator out too, unless ``IBSIM_PORT`` is set as well.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]

# (name, module) in start order: the forwarder first so no early message is lost.
SERVICES = [
    ("bus", "shared.busproxy"),
    ("ibsim", "ibsim"),
    ("monitor", "monitor"),
    ("execution", "execution"),
    ("inference", "inference"),
    ("trainer", "trainer"),
    ("marketdata", "marketdata"),
]
COLOURS = ["36", "35", "32", "33", "34", "31", "37"]
# Marketdata and execution connect to the simulator at start: started before it listens, their
# first connect fails and retries 2 s later, and the snapshots inference and execution warm up
# from come back empty in between (inference would then warm from live bars: ~100 bars a symbol,
# minutes). So the services after ibsim start once it answers (in ~1-2 s), or after this long.
IBSIM_READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 4.0  # SIGTERM -> SIGKILL; plus reaping, Ctrl-C returns within about 5 s
# Native defaults that mirror compose.yaml (an explicit variable wins): state under var/, and the
# market data path a real paper account uses: marketdata reads bars through the TWS API
# (MARKETDATA_SOURCE=ib) from the simulator, which is the market (IBSIM_PRICE_SOURCE=replay, paced
# by IBSIM_REPLAY_SPEED under execution's order-rate limit). A real TWS / IB Gateway: set
# IB_HOST / IB_PORT (marketdata and execution both follow them) and leave ibsim out.
STATE_DEFAULTS = {
    "IBSIM_STATE_DIR": "var/ibsim",
    "MARKETDATA_SOURCE": "ib",
    "IBSIM_PRICE_SOURCE": "replay",
}


class Supervisor:
    """Child processes, each in its own process group, with their output prefixed and merged."""

    def __init__(
        self,
        commands: Sequence[tuple[str, list[str]]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        out: IO[str] = sys.stdout,
        colour: bool = False,
    ) -> None:
        self.commands = list(commands)
        self.env = dict(env if env is not None else os.environ)
        self.cwd = cwd
        self.out = out
        self.colour = colour
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.selector = selectors.DefaultSelector()
        self._partial: dict[int, bytes] = {}
        self.interrupts = 0

    # ------------------------------------------------------------------ start
    def start(self, name: str, argv: list[str], index: int = 0) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C reaches us only, and killpg the rest
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        label = (
            f"\033[{COLOURS[index % len(COLOURS)]}m{name:>10}\033[0m"
            if self.colour
            else f"{name:>10}"
        )
        self.selector.register(proc.stdout, selectors.EVENT_READ, label)
        self.procs.append((name, proc))
        return proc

    def start_all(
        self,
        pause_after: Mapping[str, float] | None = None,
        ready_before_next: Mapping[str, tuple[Callable[[], bool], float]] | None = None,
    ) -> None:
        """Start every command in order. ``pause_after[name]``: seconds to wait after starting
        it (e.g. let the forwarder bind first); ``ready_before_next[name]``: (probe, timeout)
        to wait until the probe says the service is ready, or the timeout or its exit, before
        starting the next one (said in the output when it is not ready in time)."""
        for index, (name, argv) in enumerate(self.commands):
            proc = self.start(name, argv, index)
            if pause_after and name in pause_after:
                until = time.monotonic() + pause_after[name]
                while time.monotonic() < until:
                    self.pump(until - time.monotonic())
            if ready_before_next and name in ready_before_next:
                probe, timeout_s = ready_before_next[name]
                until = time.monotonic() + timeout_s
                while not probe():
                    if proc.poll() is not None or time.monotonic() >= until:
                        self.say(f"{name} not ready after {timeout_s:g} s; starting the rest")
                        break
                    self.pump(0.2)
        self.say(
            f"started {len(self.procs)} processes: "
            + ", ".join(f"{n}={p.pid}" for n, p in self.procs)
        )

    # ------------------------------------------------------------------ output
    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def pump(self, timeout: float) -> None:
        """Write every complete line available within ``timeout`` seconds (never blocks longer)."""
        if not self.selector.get_map():
            time.sleep(max(0.0, timeout))
            return
        for key, _ in self.selector.select(timeout=max(0.0, timeout)):
            stream = key.fileobj
            fd = key.fd
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            buffered = self._partial.pop(fd, b"") + chunk
            if not chunk:  # EOF: the process closed its output
                self.selector.unregister(stream)
                if buffered:
                    self._write(key.data, buffered)
                continue
            *lines, rest = buffered.split(b"\n")
            if rest:
                self._partial[fd] = rest
            for line in lines:
                self._write(key.data, line)
        self.out.flush()

    def _write(self, label: str, line: bytes) -> None:
        self.out.write(f"{label} | {line.decode(errors='replace')}\n")

    # ------------------------------------------------------------------ supervision
    def alive(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        return [(n, p) for n, p in self.procs if p.poll() is None]

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # the service and anything it started (trainer jobs)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
        """SIGTERM to all at once, keep reading their output, SIGKILL the rest after
        ``timeout_s`` (or at once on a further interrupt). Returns the names that were killed."""
        interrupts_before = self.interrupts
        for _name, proc in self.alive():
            self._signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline and self.interrupts == interrupts_before:
            self.pump(min(0.1, max(0.0, deadline - time.monotonic())))
        killed = []
        for name, proc in self.alive():
            killed.append(name)
            self.say(f"{name} did not stop within {timeout_s:g} s; killing it (SIGKILL)")
            self._signal_group(proc, signal.SIGKILL)
        for _name, proc in self.procs:
            # unkillable (D state): do not hang `make run`
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
        # What they printed while stopping; a grandchild may hold a pipe open, so bounded.
        drain_until = time.monotonic() + 0.5
        while self.selector.get_map() and time.monotonic() < drain_until:
            self.pump(0.05)
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        return killed


def ibsim_ready(env: Mapping[str, str]) -> bool:
    """The simulator answers on its control port (its TWS port listens by then)."""
    from ibsim.health import DEFAULT_CONTROL_PORT, ping

    try:
        port = int(env.get("IBSIM_CONTROL_PORT", DEFAULT_CONTROL_PORT))
        return bool(ping(port, timeout_s=0.5).get("ok"))
    except (OSError, ValueError):
        return False


def services_to_skip(env: Mapping[str, str]) -> set[str]:
    """``RUN_SKIP``, plus the simulator when ``IB_HOST``/``IB_PORT`` point at a real gateway:
    switching to TWS / IB Gateway is those two variables and nothing else (a simulator on the
    gateway's port would only collide with it). Setting ``IBSIM_PORT`` too keeps the simulator
    (``make paper-trading`` does, when it runs on one)."""
    skip = set(filter(None, env.get("RUN_SKIP", "").split(",")))
    if ("IB_HOST" in env or "IB_PORT" in env) and "IBSIM_PORT" not in env:
        skip.add("ibsim")
    return skip


def main() -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in STATE_DEFAULTS.items():
        env.setdefault(name, value)
    if "MARKETDATA_SYMBOLS" in env:  # the simulator plays what marketdata asks for
        env.setdefault("IBSIM_REPLAY_SYMBOLS", env["MARKETDATA_SYMBOLS"])
    skip = services_to_skip(env)
    timeout_s = float(env.get("RUN_STOP_TIMEOUT_S", STOP_TIMEOUT_S))
    commands = [(n, [sys.executable, "-m", m]) for n, m in SERVICES if n not in skip]
    supervisor = Supervisor(commands, env=env, colour=sys.stdout.isatty())
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        supervisor.interrupts += 1

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor.start_all(
        pause_after={"bus": 0.3},
        ready_before_next={"ibsim": (lambda: ibsim_ready(env), IBSIM_READY_TIMEOUT_S)},
    )
    exit_code = 0
    while not stopping:
        supervisor.pump(0.5)
        exited = supervisor.first_exited()
        if exited is not None and not stopping:
            name, code = exited
            supervisor.say(f"{name} exited with {code}; stopping the others")
            exit_code = code or 1
            break
    if stopping:
        supervisor.say(f"stopping {len(supervisor.alive())} services (Ctrl-C again: kill now)")
    supervisor.stop(timeout_s)
    supervisor.say("all services stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
