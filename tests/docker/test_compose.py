"""The real stack under ``docker compose``: health, fills, restarts, kills, scaling, image sizes.

One stack per module under a unique project name (``rltrader-test-<random>``), built offline
from ``docker/wheels`` and torn down with ``down -v`` whatever happens. Order matters: the tests
run top to bottom against the same trading stack and check the same invariants after each
disturbance:

* every order reference reaches the broker (the IB simulator) at most once;
* the monitor's ledger holds exactly the simulator's executions (after it reconciles).

Needs the engine and Compose v2 (``.ci/docker-setup.sh``, run here when missing and we are root).
With ``RLTRADER_REQUIRE_DOCKER=1`` (CI) a missing engine fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [REPO / "compose.yaml", Path(__file__).with_name("compose.test.yaml")]
LOCAL_BASE_IMAGE = "rltrader/base:bookworm"
TAG = os.environ.get("RLTRADER_TAG", "test")
LIGHT_IMAGE = f"rltrader/light:{TAG}"
TRAINER_IMAGE = f"rltrader/trainer:{TAG}"
ALL_SERVICES = ["bus", "ibsim", "marketdata", "inference", "execution", "monitor", "trainer"]
# Which services to start (default: all). A dev box short of memory may leave the trainer out.
SERVICES = os.environ.get("RLTRADER_DOCKER_SERVICES", ",".join(ALL_SERVICES)).split(",")
# Stated limits (a failure message names them; they are deadlines for waiting, not timing checks).
STARTUP_LIMIT_S = 300  # every service healthy after `up` (images already built)
RECOVERY_LIMIT_S = 120  # a restarted or killed service healthy again
PROGRESS_LIMIT_S = 120  # new fills after a disturbance
RECONCILE_LIMIT_S = 120  # ledger == simulator once trading stops
LIGHT_IMAGE_LIMIT_MB = 400


def _run(
    cmd: list[str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(_failure(cmd, proc))
    return proc


def _failure(cmd: list[str], proc: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _engine_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return info.returncode == 0 and compose.returncode == 0


def _ensure_engine() -> None:
    if _engine_ready():
        return
    required = os.environ.get("RLTRADER_REQUIRE_DOCKER") == "1"
    if os.geteuid() == 0:
        setup = subprocess.run(
            ["bash", str(REPO / ".ci/docker-setup.sh")], capture_output=True, text=True, timeout=900
        )
        if setup.returncode == 0 and _engine_ready():
            return
        message = f"docker setup failed:\n{setup.stdout[-2000:]}\n{setup.stderr[-2000:]}"
    else:
        message = "no docker engine / compose v2 (run .ci/docker-setup.sh as root)"
    if required:
        pytest.fail(message)
    pytest.skip(message)


def _wait(what: str, limit_s: float, probe: Callable[[], Any], every_s: float = 2.0) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the limit."""
    deadline = time.monotonic() + limit_s
    last: Any = None
    while True:
        try:
            last = probe()
        except (AssertionError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {limit_s:.0f}s (last: {last!r})"[:4000])
        time.sleep(every_s)


class Stack:
    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = env

    def compose(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = [a for f in COMPOSE_FILES for a in ("-f", str(f))]
        cmd = ["docker", "compose", "-p", self.project, *files, *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=self.env
        )
        if check and proc.returncode != 0:
            raise AssertionError(_failure(cmd, proc))
        return proc

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        out = self.compose("ps", "-a", "--format", "json", *([service] if service else [])).stdout
        rows: list[dict[str, Any]] = []
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            parsed = json.loads(line)
            rows.extend(parsed if isinstance(parsed, list) else [parsed])
        return rows

    def healthy(self, service: str, count: int = 1) -> bool:
        rows = self.containers(service)
        ok = [r for r in rows if r.get("State") == "running" and r.get("Health") == "healthy"]
        return len(ok) >= count

    def wait_healthy(self, service: str, limit_s: float = RECOVERY_LIMIT_S, count: int = 1) -> None:
        _wait(f"{service} healthy", limit_s, lambda: self.healthy(service, count))

    def container_id(self, service: str) -> str:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: expected one container, got {ids}"
        return ids[0]

    def exec_json(self, service: str, code: str) -> Any:
        out = self.compose("exec", "-T", service, "python", "-c", code, timeout=60).stdout
        return json.loads(out)

    def ledger_fills(self) -> list[dict[str, Any]]:
        out = self.compose(
            "exec", "-T", "monitor", "python", "-m", "monitor.query", "fills", timeout=60
        ).stdout
        fills: list[dict[str, Any]] = json.loads(out)
        return fills

    def sim(self, cmd: str) -> list[dict[str, Any]]:
        code = (
            "import json; from ibsim.control import control_request as c; "
            f"r = c(4003, {{'cmd': {cmd!r}}}); assert r['ok'], r; print(json.dumps(r[{cmd!r}]))"
        )
        result: list[dict[str, Any]] = self.exec_json("ibsim", code)
        return result

    def assert_no_duplicate_orders(self) -> int:
        orders = self.sim("orders")
        refs = Counter(o["order_ref"] for o in orders if o["order_ref"])
        dupes = {ref: n for ref, n in refs.items() if n > 1}
        assert not dupes, f"order references sent more than once: {dupes}"
        return len(orders)

    def wait_new_fills(self, than: int, what: str, at_least: int = 1) -> int:
        n = _wait(
            f"{at_least} new fill(s) in the ledger after {what}",
            PROGRESS_LIMIT_S,
            lambda: len(f) if len(f := self.ledger_fills()) >= than + at_least else 0,
        )
        return int(n)

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", timeout=60, check=False).stdout


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Write a line to the terminal even while output is captured (timings, image sizes)."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if terminal is None or capture is None:
            print(f"[docker] {line}")
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(f"\n[docker] {line}")

    return write


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, report: Callable[[str], None]) -> Iterator[Stack]:
    _ensure_engine()
    wheels = subprocess.run(
        ["bash", str(REPO / "docker/wheelhouse.sh")], capture_output=True, text=True, timeout=1800
    )
    assert wheels.returncode == 0, f"docker/wheelhouse.sh failed:\n{wheels.stderr[-3000:]}"
    env = dict(os.environ)
    if "BASE_IMAGE" not in env:
        local = subprocess.run(
            ["docker", "image", "inspect", LOCAL_BASE_IMAGE], capture_output=True
        )
        env["BASE_IMAGE"] = LOCAL_BASE_IMAGE if local.returncode == 0 else "python:3.11-slim"
    env["RLTRADER_TAG"] = TAG
    env.pop("COMPOSE_PROJECT_NAME", None)
    s = Stack(f"rltrader-test-{uuid.uuid4().hex[:8]}", env)
    failed_before = request.session.testsfailed
    try:
        t0 = time.monotonic()
        s.compose("build", timeout=1800)
        t_build = time.monotonic() - t0
        t0 = time.monotonic()
        s.compose(
            "up",
            "-d",
            "--wait",
            "--wait-timeout",
            str(STARTUP_LIMIT_S),
            *SERVICES,
            timeout=STARTUP_LIMIT_S + 60,
        )
        started_s = time.monotonic() - t0
        report(f"{s.project}: build {t_build:.0f}s, healthy {started_s:.0f}s after up")
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        if request.session.testsfailed > failed_before:
            report("logs after a failure:\n" + s.logs())
        s.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=300, check=False)


def test_all_services_healthy(stack: Stack) -> None:
    rows = {r["Service"]: r for r in stack.containers()}
    assert sorted(rows) == sorted(SERVICES)
    for name, row in rows.items():
        assert row["State"] == "running" and row["Health"] == "healthy", f"{name}: {row}"
    # only the monitor publishes a port in compose.yaml (the test override drops it)
    assert all(
        not r.get("Publishers") or not any(p.get("PublishedPort") for p in r["Publishers"])
        for r in rows.values()
    )


def test_images_small_and_light_has_no_torch_or_ray(
    stack: Stack, report: Callable[[str], None]
) -> None:
    sizes = {}
    for image in (LIGHT_IMAGE, TRAINER_IMAGE):
        out = _run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout
        sizes[image] = int(out.strip()) / 1e6
    report("image sizes: " + ", ".join(f"{k} {v:.0f} MB" for k, v in sizes.items()))
    assert sizes[LIGHT_IMAGE] < LIGHT_IMAGE_LIMIT_MB, sizes
    probe = "import importlib.util as u; print([m for m in ('torch', 'ray') if u.find_spec(m)])"
    light = _run(["docker", "run", "--rm", LIGHT_IMAGE, "python", "-c", probe]).stdout.strip()
    assert light == "[]", light
    trainer = _run(["docker", "run", "--rm", TRAINER_IMAGE, "python", "-c", probe]).stdout.strip()
    assert trainer == "['torch', 'ray']", trainer
    user = _run(["docker", "run", "--rm", LIGHT_IMAGE, "id", "-u"]).stdout.strip()
    assert user != "0", "images must run as a non-root user"


def test_fills_reach_the_monitor_ledger(stack: Stack) -> None:
    stack.wait_new_fills(0, "start", at_least=2)
    fills = stack.ledger_fills()  # first: any fill it holds is then already in the simulator
    executions = {e["exec_id"]: e for e in stack.sim("executions")}
    for fill in fills:
        assert fill["exec_id"] in executions, f"ledger fill unknown to the simulator: {fill}"
        assert fill["order_ref"] == executions[fill["exec_id"]]["order_ref"]
    stack.assert_no_duplicate_orders()


def test_restart_and_kills_during_trading_send_no_order_twice(stack: Stack) -> None:
    n = len(stack.ledger_fills())
    stack.compose("restart", "execution")
    stack.wait_healthy("execution")
    n = stack.wait_new_fills(n, "compose restart execution")
    stack.assert_no_duplicate_orders()
    for service in ("execution", "inference", "marketdata", "monitor"):
        cid = stack.container_id(service)
        _run(["docker", "kill", "-s", "KILL", cid])
        # docker counts `docker kill` as a manual stop: the restart policy leaves it down.
        stack.compose("start", service)
        stack.wait_healthy(service)
        n = stack.wait_new_fills(n, f"docker kill -s KILL {service}")
        stack.assert_no_duplicate_orders()
    # A crash inside the container (the process dies): `restart: unless-stopped` brings it back.
    cid = stack.container_id("execution")
    restarts = int(_run(["docker", "inspect", "-f", "{{.RestartCount}}", cid]).stdout)
    crash = (
        "import os, signal; [os.kill(int(p), signal.SIGKILL) for p in os.listdir('/proc') "
        "if p.isdigit() and b'-m\\x00execution' in open(f'/proc/{p}/cmdline', 'rb').read()]"
    )
    stack.compose("exec", "-T", "execution", "python", "-c", crash, check=False)
    _wait(
        "execution restarted by its restart policy",
        RECOVERY_LIMIT_S,
        lambda: int(_run(["docker", "inspect", "-f", "{{.RestartCount}}", cid]).stdout) > restarts,
    )
    stack.wait_healthy("execution")
    stack.wait_new_fills(n, "execution crash")
    stack.assert_no_duplicate_orders()


def test_two_inference_instances_send_no_order_twice(stack: Stack) -> None:
    n = len(stack.ledger_fills())
    stack.compose(
        "up",
        "-d",
        "--no-recreate",
        "--scale",
        "inference=2",
        "--wait",
        "--wait-timeout",
        str(RECOVERY_LIMIT_S),
        "inference",
        timeout=RECOVERY_LIMIT_S + 60,
    )
    stack.wait_healthy("inference", count=2)
    stack.wait_new_fills(n, "scale inference=2", at_least=3)
    stack.assert_no_duplicate_orders()


def test_ledger_equals_simulator_executions(stack: Stack, report: Callable[[str], None]) -> None:
    stack.compose("stop", "marketdata")  # no more bars -> no more orders; let everything settle

    def settled() -> bool:
        sim = {e["exec_id"]: e for e in stack.sim("executions")}
        ledger = {f["exec_id"]: f for f in stack.ledger_fills()}
        return bool(sim) and sim.keys() == ledger.keys()

    _wait("ledger == simulator executions", RECONCILE_LIMIT_S, settled, every_s=3)
    sim = {e["exec_id"]: e for e in stack.sim("executions")}
    ledger = {f["exec_id"]: f for f in stack.ledger_fills()}
    assert sim.keys() == ledger.keys()
    for exec_id, e in sim.items():
        f = ledger[exec_id]
        assert (f["order_ref"], f["symbol"], f["side"]) == (e["order_ref"], e["symbol"], e["side"])
        assert f["quantity"] == pytest.approx(e["qty"]) and f["price"] == pytest.approx(e["price"])
    orders = stack.assert_no_duplicate_orders()
    report(f"{len(sim)} executions from {orders} orders; ledger == simulator")
