"""`make run`: every service as its own local process on one real ZeroMQ bus.

Starts the bus forwarder, the IB gateway simulator, marketdata, inference, execution, monitor and
trainer; prefixes each line of their JSON logs with the service name; Ctrl-C (or SIGTERM) stops
them all, newest first, and waits for each. If one dies, the others are stopped too.
State lives under ``var/`` (ledger, replay cursor, secrets); ``make clean`` resets it.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def main() -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    skip = set(filter(None, env.get("RUN_SKIP", "").split(",")))
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    selector = selectors.DefaultSelector()
    colour = sys.stdout.isatty()
    for index, (name, module) in enumerate(SERVICES):
        if name in skip:
            continue
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append((name, proc))
        assert proc.stdout is not None
        label = f"\033[{COLOURS[index]}m{name:>10}\033[0m" if colour else f"{name:>10}"
        selector.register(proc.stdout, selectors.EVENT_READ, label)
        if name == "bus":
            time.sleep(0.3)
    print(
        f"started {len(procs)} processes: " + ", ".join(f"{n}={p.pid}" for n, p in procs),
        flush=True,
    )

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for key, _ in selector.select(timeout=0.5):
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if line:
                sys.stdout.write(f"{key.data} | {line.decode(errors='replace')}")
                sys.stdout.flush()
        for name, proc in procs:
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the others", flush=True)
                exit_code = proc.returncode or 1
                stopping = True
                break
    for _name, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", flush=True)
            proc.kill()
    # Drain what they printed while stopping.
    for key in list(selector.get_map().values()):
        rest = key.fileobj.read()  # type: ignore[union-attr]
        for line in rest.decode(errors="replace").splitlines():
            sys.stdout.write(f"{key.data} | {line}\n")
    print("all services stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
