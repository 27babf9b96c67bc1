"""`make run`'s supervisor: Ctrl-C stops every service at once, within a deadline.

Children here are tiny Python programs (one ignores SIGTERM, one floods its output while
stopping, one starts a grandchild), so no service is needed.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_local.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_local", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_local = _load()

POLITE = "import signal,sys,time\nprint('ready',flush=True)\ntime.sleep(60)"
STUBBORN = (
    "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready',flush=True)\ntime.sleep(60)"
)
# On SIGTERM: write ~2 MB (far more than a pipe holds) and a last line, then exit.
CHATTY = (
    "import signal,sys,time\n"
    "def bye(*_):\n"
    "    for i in range(20000): sys.stdout.write('x' * 100 + '\\n')\n"
    "    print('bye', flush=True); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\nprint('ready',flush=True)\ntime.sleep(60)"
)
PARENT = (
    "import subprocess,time\np = subprocess.Popen(['sleep','60'])\n"
    "print('ready', p.pid, flush=True)\ntime.sleep(60)"
)


def _supervisor(programs: dict[str, str]) -> tuple[object, io.StringIO]:
    out = io.StringIO()
    sup = run_local.Supervisor(
        [(name, [sys.executable, "-c", code]) for name, code in programs.items()],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        out=out,
    )
    sup.start_all()
    deadline = time.monotonic() + 30
    while out.getvalue().count("| ready") < len(programs):  # readiness, not a fixed sleep
        assert time.monotonic() < deadline, out.getvalue()
        sup.pump(0.2)
    return sup, out


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def test_sigterm_to_all_then_sigkill_after_the_deadline() -> None:
    sup, out = _supervisor({"polite": POLITE, "stubborn": STUBBORN})
    killed = sup.stop(timeout_s=1.0)
    assert killed == ["stubborn"]
    assert "stubborn did not stop within 1 s" in out.getvalue()
    assert all(p.poll() is not None for _, p in sup.procs)
    assert [p.returncode for _, p in sup.procs] == [-signal.SIGTERM, -signal.SIGKILL]


def test_output_while_stopping_is_read_so_a_chatty_service_exits_in_time() -> None:
    """A service that logs more than a pipe holds while it shuts down must not be blocked on a
    full pipe (and then killed): the supervisor keeps reading during the stop."""
    sup, out = _supervisor({"chatty": CHATTY})
    assert sup.stop(timeout_s=20.0) == []
    assert sup.procs[0][1].returncode == 0
    assert "    chatty | bye" in out.getvalue()


def test_the_whole_process_group_is_stopped() -> None:
    sup, out = _supervisor({"parent": PARENT})
    line = next(x for x in out.getvalue().splitlines() if "| ready" in x)
    grandchild = int(line.split()[-1])
    sup.stop(timeout_s=2.0)
    deadline = time.monotonic() + 10
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the service's own child survived the stop"
        time.sleep(0.05)


def test_a_further_interrupt_kills_at_once() -> None:
    sup, _out = _supervisor({"stubborn": STUBBORN})
    sup.interrupts = 0

    def second_ctrl_c(*_: object) -> None:
        sup.interrupts += 1

    previous = signal.signal(signal.SIGALRM, second_ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        killed = sup.stop(timeout_s=120.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert killed == ["stubborn"]  # long before the 120 s deadline, or the test would hang


def test_state_defaults_mirror_the_docker_volumes() -> None:
    assert run_local.STATE_DEFAULTS["IBSIM_STATE_DIR"].startswith("var/")
    assert run_local.STOP_TIMEOUT_S < 5


def test_the_next_service_starts_only_once_the_probe_says_ready(tmp_path: Path) -> None:
    flag = tmp_path / "listening"
    slow = f"import time\ntime.sleep(0.5)\nopen({str(flag)!r}, 'w').close()\ntime.sleep(60)"
    out = io.StringIO()
    sup = run_local.Supervisor(
        [("sim", [sys.executable, "-c", slow]), ("after", [sys.executable, "-c", POLITE])],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        out=out,
    )
    try:
        sup.start_all(ready_before_next={"sim": (flag.exists, 30.0)})
        names = [name for name, _ in sup.procs]
        assert names == ["sim", "after"]
        # the second process was started after the probe turned true, not before
        assert flag.exists()
        assert "not ready" not in out.getvalue()
    finally:
        sup.stop(2.0)


def test_a_probe_that_never_turns_true_starts_the_rest_after_its_timeout() -> None:
    out = io.StringIO()
    sup = run_local.Supervisor(
        [("sim", [sys.executable, "-c", POLITE]), ("after", [sys.executable, "-c", POLITE])],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        out=out,
    )
    try:
        t0 = time.monotonic()
        sup.start_all(ready_before_next={"sim": (lambda: False, 0.5)})
        assert time.monotonic() - t0 >= 0.5
        assert [name for name, _ in sup.procs] == ["sim", "after"]
        assert "sim not ready after 0.5 s; starting the rest" in out.getvalue()
    finally:
        sup.stop(2.0)


def test_ibsim_ready_is_false_when_nothing_listens() -> None:
    from ibsim.process import free_ports

    (free,) = free_ports(1)
    assert run_local.ibsim_ready({"IBSIM_CONTROL_PORT": str(free)}) is False
