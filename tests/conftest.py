"""Shared fixtures: free ports, an isolated bus forwarder process, a per-test secret file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from shared.bus import security_from_env
from shared.curve import BusSecurity

REPO_ROOT = Path(__file__).resolve().parents[1]


class _PortAllocator:
    """Hands out TCP ports *below* the kernel's ephemeral range, never the same one twice in a
    pytest process.

    ``bind(port 0)`` then release is racy: the kernel may give the same port to any other
    socket (an outbound ZeroMQ connection's local port, another test's bind) before the child
    process binds it, and the child dies with "Address already in use". Ports below
    ``ip_local_port_range`` are never chosen by the kernel for port 0 or for outbound
    connections, so only explicit binds can collide: a per-process counter (started at a
    pid-derived offset, so concurrent pytest runs walk different stretches) rules out our own
    reuse and a probe bind skips ports something else holds."""

    LOW, HIGH = 20000, 32000

    def __init__(self) -> None:
        # Under pytest-xdist (``-n N``) each worker owns its own slice of the range, so two
        # workers never hand out the same port, however many ports a test takes.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
        width = (self.HIGH - self.LOW) // max(workers, 1)
        self._low = self.LOW + index * width
        self._span = width
        self._next = (os.getpid() * 97) % self._span

    def take(self) -> int:
        span = self._span
        for _ in range(span):
            port = self._low + self._next
            self._next = (self._next + 1) % span
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise RuntimeError(f"no free TCP port in {self._low}-{self._low + span}")


_PORTS = _PortAllocator()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no other test in this process has been given."""
    return _PORTS.take()


def sim_ports() -> dict[str, str]:
    """The simulator's two ports from this allocator, for ``SimulatorProcess(env)``: its own
    default picks them with ``bind(port 0)``, in the kernel's ephemeral range, where an outbound
    connection can take one before the simulator binds it (seen in the stability loop: "address
    already in use" at the simulator's start)."""
    return {"IBSIM_PORT": str(free_port()), "IBSIM_CONTROL_PORT": str(free_port())}


@pytest.fixture
def bus_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a private bus: fresh ports for the forwarder and every command endpoint,
    its own HMAC secret and CURVE key folder. The test process gets it too, so a
    ``shared.command_channel.call`` from the test talks to this bus as the ``operator`` identity,
    as a CLI on the same host would."""
    env = {
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SECRET_FILE": str(tmp_path / "secrets" / "bus.key"),
    }
    for service in ("marketdata", "inference", "execution", "trainer", "monitor"):
        env[f"{service.upper()}_CMD_ENDPOINT"] = f"tcp://127.0.0.1:{free_port()}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def bus_security(env: dict[str, str], identity: str) -> BusSecurity | None:
    """CURVE credentials of ``identity`` on the test bus described by ``env``."""
    return security_from_env(identity, {**os.environ, **env})


FORWARDER_READY_S = 30.0  # a failure guard, never a timing assertion


def wait_forwarder_ready(
    proc: subprocess.Popen[bytes], env: dict[str, str], timeout_s: float = FORWARDER_READY_S
) -> None:
    """Readiness of a forwarder started with ``env``: with CURVE on, a subscriber (as the monitor
    identity) receives the forwarder's own ``hb.bus`` heartbeat, which proves both the ZAP handler
    and the XPUB side are up and subscriptions reach it; with CURVE off (the plain proxy publishes
    nothing), both ports accept TCP connections."""
    deadline = time.monotonic() + timeout_s
    security = bus_security(env, "monitor")
    if security is None:
        for endpoint in (env["BUS_PUB_ENDPOINT"], env["BUS_SUB_ENDPOINT"]):
            host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
            while True:
                assert proc.poll() is None, "busproxy exited at start"
                try:
                    socket.create_connection((host, int(port)), timeout=1.0).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"busproxy not listening on {endpoint}"
                    time.sleep(0.05)
        return
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        security.client(sock, "bus")
        sock.connect(env["BUS_SUB_ENDPOINT"])
        sock.setsockopt(zmq.SUBSCRIBE, b"hb.bus")
        while not sock.poll(100):
            assert proc.poll() is None, "busproxy exited at start"
            assert time.monotonic() < deadline, f"no hb.bus from the forwarder in {timeout_s}s"
        frames = sock.recv_multipart()
        assert frames[0] == b"hb.bus", frames[:1]
    finally:
        sock.close(linger=0)
        ctx.term()


@pytest.fixture
def busproxy(bus_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The real forwarder as a separate process; yields the environment to reach it once it is
    ready (see ``wait_forwarder_ready``). The key folder is made here first, so the forwarder
    and the test never race to create it."""
    bus_security(bus_env, "monitor")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.busproxy"],
        env={**os.environ, **bus_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_forwarder_ready(proc, bus_env)
        yield bus_env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a loaded CI box: do not fail a test on teardown
            proc.kill()
            proc.wait()


_TIER_BY_FOLDER = {
    "unit": "unit",
    "integration": "integration",
    "docker": "docker",
    "fuzz": "fuzz",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries its tier's marker from its folder, so `-m unit` etc. select reliably."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        tier = _TIER_BY_FOLDER.get(folder)
        if tier and tier not in item.keywords:
            item.add_marker(getattr(pytest.mark, tier))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say loudly, at the very end, which tier had skipped tests and why: a green run that
    skipped the Docker tier has not tested the product's main way of running."""
    skipped: dict[str, dict[str, int]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        tier = next((t for t in _TIER_BY_FOLDER.values() if t in report.keywords), "other")
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "skipped"
        skipped.setdefault(tier, {}).setdefault(reason, 0)
        skipped[tier][reason] += 1
    if not skipped:
        return
    terminalreporter.write_sep("!", "TIERS WITH SKIPPED TESTS", red=True, bold=True)
    for tier, reasons in sorted(skipped.items()):
        for reason, count in reasons.items():
            terminalreporter.write_line(f"  {tier}: {count} skipped: {reason}", red=True)


@pytest.fixture(params=["compiled", "numpy"])
def bank_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on both of the feature bank's banked updates: the compiled kernel
    (``shared.feature_kernel``, numba) and the numpy pass (as an install without numba)."""
    import shared.feature_bank as bank_mod

    if request.param == "numpy":
        monkeypatch.setattr(bank_mod, "feature_kernel", None)
    elif bank_mod.feature_kernel is None:
        pytest.skip("numba is not installed (the `fast` extra): the compiled kernel is not run")
    return str(request.param)
