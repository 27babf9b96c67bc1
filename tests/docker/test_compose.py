"""The real stack under ``docker compose``: health, fills, restarts, kills, scaling, image sizes,
a model pushed from the trainer container and hot-swapped, forged control commands refused.

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
import socket
import subprocess
import time
import urllib.request
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
SWAP_LIMIT_S = 60  # every inference instance serves a pushed model (or refused a bad one)
SIGNAL_LIMIT_S = 90  # signals seen on the bus after a swap

# Probes run with ``python -c`` inside the stack's containers (the images carry the project).
# A signed command (the stack's key) to a service; prints {"ok": ..., "result" | "error"}.
COMMAND_PROBE = """
import json, sys
from shared.auth import load_or_create_key
from shared.command_channel import CommandError, call
from shared.config import bus_settings, command_endpoint
key = load_or_create_key(bus_settings().secret_file)
service, name, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    result = call(command_endpoint(service), name, args, key, timeout_s=30, sender="docker-test")
except CommandError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
else:
    print(json.dumps({"ok": True, "result": result}, default=str))
"""

# In the trainer: a new model version in best_models/ (the shipped baseline policy re-released
# under a new name: same graph, its own manifest) and a copy of it whose model.onnx is corrupted
# (one byte flipped; the manifest keeps the true sha256). Prints the good version's sha256.
MAKE_MODELS_PROBE = """
import json, os, sys, time
from pathlib import Path
import msgspec
from shared.manifest import MODEL_FILE, read_manifest
from shared.model_store import resolve_artifact, write_artifact
version, corrupt = sys.argv[1], sys.argv[2]
src = resolve_artifact(os.environ["TRAINER_MODEL_DIR"], "baseline")
base = read_manifest(src)
onnx = (src / MODEL_FILE).read_bytes()
root = Path(os.environ["TRAINER_OUTPUT_DIR"]) / "best_models"
now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
made = {}
for name in (version, corrupt):
    manifest = msgspec.structs.replace(
        base, version=name, created_at=now,
        provenance=f"tests/docker: {base.version} re-released as {name}",
    )
    made[name] = write_artifact(root, manifest, onnx)
bad = bytearray((made[corrupt] / MODEL_FILE).read_bytes())
bad[len(bad) // 2] ^= 0xFF
(made[corrupt] / MODEL_FILE).write_bytes(bytes(bad))
print(json.dumps({"source": base.version, "sha256": read_manifest(made[version]).onnx_sha256}))
"""

# In the trainer: put the corrupted copy straight into the shared model root (bypassing the
# push checks) and announce it with a correctly signed model.updated, as a push would.
ANNOUNCE_CORRUPT_PROBE = """
import json, os, shutil, sys, time
from pathlib import Path
import zmq
from shared.auth import load_or_create_key
from shared.bus import Publisher, security_from_env
from shared.config import bus_settings
from shared.manifest import read_manifest
from trainer.registry import model_updated
corrupt = sys.argv[1]
src = Path(os.environ["TRAINER_OUTPUT_DIR"]) / "best_models" / corrupt
dst = Path(os.environ["TRAINER_MODEL_DIR"]) / corrupt
if not dst.exists():
    shutil.copytree(src, dst)
settings = bus_settings()
key = load_or_create_key(settings.secret_file)
ctx = zmq.Context.instance()
# as the trainer identity (only it may publish model.updated; the producer must name it)
publisher = Publisher(ctx, settings.pub_endpoint, "trainer-docker-test",
                      security=security_from_env("trainer"))
# ready = the CURVE handshake with the forwarder succeeded (then it sends its subscriptions)
monitor = publisher._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
if not monitor.poll(30000):
    raise SystemExit("no CURVE handshake with the bus forwarder within 30s")
sha = read_manifest(dst).onnx_sha256
for _ in range(3):  # each a fresh nonce: one lost before the subscriptions arrive does not matter
    publisher.publish(model_updated(corrupt, sha, key, "push"))
    time.sleep(0.5)
publisher.close()
print(json.dumps({"announced": corrupt, "sha256": sha}))
"""

# Subscribe to signal.* and collect the signals published after ``after_ns`` until every one of
# ``producers`` instances was seen ``each`` times (or the limit). Prints the signals.
STACK_SYMBOLS = ("AAPL", "NVDA")  # compose.yaml's default MARKETDATA_SYMBOLS

SIGNALS_PROBE = """
import json, sys, time
import zmq
from shared.bus import security_from_env
from shared.config import bus_settings
from shared.messages import TargetPosition, decode
after_ns, symbols, each = (int(a) for a in sys.argv[1:4])
limit = float(sys.argv[4])
sock = zmq.Context.instance().socket(zmq.SUB)
sock.setsockopt(zmq.LINGER, 0)
security_from_env("monitor").client(sock, "bus")  # frames: [topic, sender identity, payload]
sock.connect(bus_settings().sub_endpoint)
sock.setsockopt(zmq.SUBSCRIBE, b"signal.")
seen, counts = [], {}
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    if len(counts) >= symbols and min(counts.values()) >= each:
        break
    if not sock.poll(1000):
        continue
    message = decode(sock.recv_multipart()[-1])
    if isinstance(message, TargetPosition) and message.ts_publish > after_ns:
        counts[message.symbol] = counts.get(message.symbol, 0) + 1
        seen.append({"producer": message.producer, "symbol": message.symbol,
                     "model_version": message.model_version, "bar_seq": message.bar_seq})
print(json.dumps(seen))
"""

# Commands an attacker on the network could send execution. Each goes on a raw DEALER socket
# and must come back refused; only the replay's first send (a correctly signed, fresh ``rearm``,
# harmless while execution is armed) is accepted. Prints {case: [{"ok", "error"}, ...]}.
FORGED_COMMANDS_PROBE = """
import json, secrets, sys, time
import msgspec, zmq
from shared.auth import load_or_create_key, sign
from shared.bus import security_from_env
from shared.command_channel import CommandError, call
from shared.config import bus_settings, command_endpoint
from shared.messages import Command, Reply
tag = sys.argv[1]
operator = security_from_env("operator")  # a known key with the rights: only the HMAC is wrong
endpoint = command_endpoint("execution")
key = load_or_create_key(bus_settings().secret_file)
encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(Reply)

def command(name, case, ts=None):
    return Command(name=name, args={}, request_id=secrets.token_hex(8),
                   ts=ts or time.time_ns(), nonce="", sender=f"{tag}-{case}")

def send(frames):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    operator.client(sock, "execution")
    sock.connect(endpoint)
    replies = []
    for payload in frames:
        sock.send_multipart([b"", payload])
        if not sock.poll(30000):
            raise SystemExit(f"execution did not answer within 30s ({len(replies)} replies)")
        reply = decoder.decode(sock.recv_multipart()[-1])
        replies.append({"ok": reply.ok, "error": reply.error})
    sock.close()
    return replies

out = {}
try:
    call(endpoint, "kill", {}, b"x" * 64, timeout_s=30, sender=f"{tag}-wrong_key")
    out["wrong_key"] = [{"ok": True, "error": ""}]
except CommandError as exc:
    out["wrong_key"] = [{"ok": False, "error": str(exc)}]
out["unsigned"] = send([encoder.encode(command("kill", "unsigned"))])
signed = sign(command("rearm", "tampered"), key)
out["tampered"] = send([encoder.encode(msgspec.structs.replace(signed, name="kill"))])
old = sign(command("kill", "stale", ts=time.time_ns() - 600 * 10**9), key)
out["stale"] = send([encoder.encode(old)])
replay = encoder.encode(sign(command("rearm", "replayed"), key))
out["replayed"] = send([replay, replay])
print(json.dumps(out))
"""


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
        ids = self.container_ids(service)
        assert len(ids) == 1, f"{service}: expected one container, got {ids}"
        return ids[0]

    def container_ids(self, service: str) -> list[str]:
        return sorted(self.compose("ps", "-q", service).stdout.split())

    def command(
        self,
        service: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        via: str = "monitor",
        container: str | None = None,
    ) -> dict[str, Any]:
        """Send ``service`` a command signed with the stack's key, from inside the network.

        By default from the ``via`` service's container to the service's name (one instance);
        with ``container`` from inside that container to its own endpoint (one given replica).
        Returns ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": "..."}``.
        """
        argv = ["python", "-c", COMMAND_PROBE, service, name, json.dumps(args or {})]
        if container is None:
            out = self.compose("exec", "-T", via, *argv, timeout=90).stdout
        else:
            port = {"marketdata": 5560, "inference": 5561, "execution": 5562}[service]
            endpoint = f"{service.upper()}_CMD_ENDPOINT=tcp://127.0.0.1:{port}"
            out = _run(["docker", "exec", "-e", endpoint, container, *argv], timeout=90).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def exec_py(self, service: str, code: str, *args: str, timeout: float = 120) -> Any:
        """Run ``code`` with ``args`` in ``service``'s container; its stdout is one JSON value."""
        out = self.compose("exec", "-T", service, "python", "-c", code, *args, timeout=timeout)
        return json.loads(out.stdout)

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
        # a rebuild moves the :test tags; the images it leaves behind are this project's and
        # unreachable: remove them as `make clean-images` does, or every run of the tier after
        # a code change keeps ~2.4 GB more (a developer's disk filled up this way)
        subprocess.run(
            ["docker", "image", "prune", "-f", "--filter", "label=org.rltrader.project=rltrader"],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip


def _config() -> dict[str, Any]:
    """``docker compose config`` of compose.yaml alone (what `make up` runs), as JSON."""
    env = {**os.environ, "BASE_IMAGE": os.environ.get("BASE_IMAGE", "python:3.11-slim")}
    cmd = ["docker", "compose", "-f", str(REPO / "compose.yaml"), "config", "--format", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert proc.returncode == 0, _failure(cmd, proc)
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


def test_compose_config_is_hardened() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI")
    config = _config()
    services: dict[str, Any] = config["services"]
    networks = config["networks"]
    assert sorted(services) == sorted(["keygen", *ALL_SERVICES])
    assert networks["internal"].get("internal") is True, networks
    assert not networks["edge"].get("internal"), networks
    for name, svc in services.items():
        assert svc.get("cap_drop") == ["ALL"], (name, svc.get("cap_drop"))
        assert not svc.get("cap_add") and not svc.get("privileged"), name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert svc.get("read_only") is True, name
        assert 0 < int(svc.get("mem_limit", 0)) <= 8 * 1024**3, (name, svc.get("mem_limit"))
        assert svc.get("user") in (None, "10001", "app"), (name, svc.get("user"))
        mounts = {v["target"]: v for v in svc.get("volumes", [])}
        secrets = mounts["/run/rltrader-secrets"]
        assert secrets["source"] == "secrets", (name, secrets)
        if name == "keygen":
            # the only writer of the keys; no network at all, runs once
            assert not secrets.get("read_only"), secrets
            assert svc.get("network_mode") == "none", svc.get("network_mode")
            assert svc.get("restart") in (None, "no"), svc.get("restart")
            continue
        assert secrets.get("read_only") is True, (name, secrets)
        assert svc["depends_on"]["keygen"]["condition"] == "service_completed_successfully", name
        assert any(t.split(":")[0] == "/tmp" for t in svc.get("tmpfs", [])), (
            name,
            svc.get("tmpfs"),
        )
        expected = {"internal", "edge"} if name == "monitor" else {"internal"}
        assert set(svc["networks"]) == expected, (name, svc["networks"])
        ports = svc.get("ports", [])
        if name == "monitor":
            assert [(p.get("host_ip"), p["target"]) for p in ports] == [("127.0.0.1", 8080)], ports
        else:
            assert not ports, (name, ports)


def test_all_services_healthy(stack: Stack) -> None:
    rows = {r["Service"]: r for r in stack.containers()}
    keygen = rows.pop("keygen", None)  # one-shot: made the keys, then exited 0
    assert keygen is not None and keygen["State"] == "exited", keygen
    assert keygen.get("ExitCode") == 0, keygen
    assert sorted(rows) == sorted(SERVICES)
    for name, row in rows.items():
        assert row["State"] == "running" and row["Health"] == "healthy", f"{name}: {row}"
    # only the monitor publishes a port, on the host's loopback (the test override: any port)
    published = {
        name: [(p.get("URL"), p["TargetPort"]) for p in r.get("Publishers") or []
               if p.get("PublishedPort")]
        for name, r in rows.items()
    }  # fmt: skip
    assert {n for n, ports in published.items() if ports} <= {"monitor"}, published
    if "monitor" in rows:
        assert published["monitor"] == [("127.0.0.1", 8080)], published


SERVICE_PORTS = {
    "bus": 5550, "ibsim": 4002, "marketdata": 5560, "inference": 5561,
    "execution": 5562, "trainer": 5563, "monitor": 5564,
}  # fmt: skip


def _connects(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def test_only_the_monitor_port_is_reachable_from_outside(stack: Stack) -> None:
    """The monitor's published port answers on the host's loopback; no other container publishes
    a port or sits on a network with a route out, and none can reach out itself."""
    address = stack.compose("port", "monitor", "8080").stdout.strip()
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1", address
    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=10) as response:
        assert response.status == 200 and json.loads(response.read())["ready"] is True
    internal = f"{stack.project}_internal"
    for service in SERVICES:
        for cid in stack.container_ids(service):
            out = _run(["docker", "inspect", cid]).stdout
            info = json.loads(out)[0]
            networks = set(info["NetworkSettings"]["Networks"])
            bindings = {k: v for k, v in (info["HostConfig"]["PortBindings"] or {}).items() if v}
            if service == "monitor":
                assert networks == {internal, f"{stack.project}_edge"}, networks
                assert list(bindings) == ["8080/tcp"], bindings
                assert all(b["HostIp"] == "127.0.0.1" for b in bindings["8080/tcp"]), bindings
            else:
                assert networks == {internal}, (service, networks)
                assert not bindings, (service, bindings)
                # nothing listens for it on the host's addresses either
                assert not _connects("127.0.0.1", SERVICE_PORTS[service], 1.0), service
    net = json.loads(_run(["docker", "network", "inspect", internal]).stdout)[0]
    assert net["Internal"] is True, net
    # no route out of the internal network: execution cannot reach the monitor's edge gateway
    # nor any outside address (the kernel refuses or the packet goes nowhere)
    edge = json.loads(_run(["docker", "network", "inspect", f"{stack.project}_edge"]).stdout)[0]
    gateway = edge["IPAM"]["Config"][0]["Gateway"]
    probe = (
        "import socket, sys\n"
        "def ok(h, p):\n"
        "    try: socket.create_connection((h, p), timeout=3).close(); return True\n"
        "    except OSError: return False\n"
        "print(ok(sys.argv[1], int(sys.argv[2])) or ok('1.1.1.1', 443))"
    )
    out = stack.compose(
        "exec", "-T", "execution", "python", "-c", probe, gateway, port, timeout=60
    ).stdout.strip()
    assert out == "False", f"execution reached outside its internal network: {out}"


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
    running = {
        service: {cid: _started(cid) for cid in stack.container_ids(service)}
        for service in ("bus", "ibsim", "marketdata", "inference", "execution", "monitor")
    }
    # the README's command as it is: no --no-recreate, no service named
    stack.compose(
        "up",
        "-d",
        "--scale",
        "inference=2",
        "--wait",
        "--wait-timeout",
        str(RECOVERY_LIMIT_S),
        timeout=RECOVERY_LIMIT_S + 60,
    )
    stack.wait_healthy("inference", count=2)
    # scaling added one replica and touched nothing else (one image for every light service)
    for service, before in running.items():
        after = {cid: _started(cid) for cid in stack.container_ids(service)}
        assert set(before) <= set(after), f"{service} was recreated by --scale"
        assert all(after[cid] == state for cid, state in before.items()), f"{service} restarted"
    assert len(stack.container_ids("inference")) == 2
    stack.wait_new_fills(n, "scale inference=2", at_least=3)
    stack.assert_no_duplicate_orders()


def _started(container: str) -> tuple[str, int]:
    """(start time, restart count) of a container: both unchanged = it was not restarted."""
    out = _run(["docker", "inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}}", container])
    started, restarts = out.stdout.split()
    return started, int(restarts)


def _inference_status(stack: Stack, container: str) -> dict[str, Any]:
    reply = stack.command("inference", "status", container=container)
    assert reply["ok"], f"inference {container[:12]} status: {reply}"
    status: dict[str, Any] = reply["result"]
    return status


def test_model_pushed_from_trainer_is_served_without_restart(
    stack: Stack, report: Callable[[str], None]
) -> None:
    if "trainer" not in SERVICES:
        pytest.skip("trainer not started (RLTRADER_DOCKER_SERVICES)")
    replicas = stack.container_ids("inference")  # two since the scale test
    assert replicas, "no inference container"
    before = {c: _started(c) for c in replicas}
    serving = {c: _inference_status(stack, c)["model"]["version"] for c in replicas}
    version = f"docker-test-{stack.project.rsplit('-', 1)[-1]}"
    corrupt = f"{version}-corrupt"
    assert version not in serving.values()

    made = stack.exec_py("trainer", MAKE_MODELS_PROBE, version, corrupt)

    # A corrupted export is refused by the trainer before anything reaches the model root.
    refused = stack.compose(
        "exec", "-T", "trainer", "python", "-m", "trainer.ctl", "push_model",
        f"version={corrupt}", timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1, _failure(["trainer.ctl push_model", corrupt], refused)
    assert "refused" in refused.stderr and "sha256" in refused.stderr, refused.stderr

    # The real push: verified, copied into the shared model root, announced with a signed
    # model.updated; every inference instance hot-swaps.
    pushed = stack.compose(
        "exec", "-T", "trainer", "python", "-m", "trainer.ctl", "push_model",
        f"version={version}", timeout=120,
    )  # fmt: skip
    result = json.loads(pushed.stdout)
    assert result["version"] == version and result["sha256"] == made["sha256"], result
    assert result["published"] is True and result["forced"] is False, result
    for c in replicas:
        _wait(
            f"inference {c[:12]} serving {version}",
            SWAP_LIMIT_S,
            lambda c=c: _inference_status(stack, c)["model"]["version"] == version,
        )
    after_ns = time.time_ns()
    for c in replicas:
        status = _inference_status(stack, c)
        assert status["model"]["onnx_sha256"] == made["sha256"], status["model"]
        assert status["previous_model"] == serving[c], status
        assert _started(c) == before[c], f"inference {c[:12]} was restarted"
    assert sorted(stack.container_ids("inference")) == replicas
    trainer = stack.command("trainer", "status")
    assert trainer["ok"] and trainer["result"]["current_model"] == version, trainer

    # Signals published after the swap carry the new version, for every symbol. The replicas
    # shard the symbols (rendezvous hashing), so each symbol comes from exactly one replica,
    # whichever it is: with 2 symbols one replica may legitimately serve both.
    signals = stack.exec_py(
        "monitor", SIGNALS_PROBE, str(after_ns), str(len(STACK_SYMBOLS)), "2", str(SIGNAL_LIMIT_S),
        timeout=SIGNAL_LIMIT_S + 60,
    )  # fmt: skip
    per_symbol = Counter(s["symbol"] for s in signals)
    assert set(per_symbol) == set(STACK_SYMBOLS) and min(per_symbol.values()) >= 2, per_symbol
    for symbol in STACK_SYMBOLS:
        served_by = {s["producer"] for s in signals if s["symbol"] == symbol}
        assert len(served_by) == 1, f"{symbol} served by {served_by}: sharding serves it once"
    assert {s["model_version"] for s in signals} == {version}, signals[:10]

    # A corrupted file that reaches the model root anyway (a correctly signed model.updated
    # naming it, and inference's own push_model command) is refused; serving goes on.
    rejected = {c: _inference_status(stack, c)["counters"]["models_rejected"] for c in replicas}
    stack.exec_py("trainer", ANNOUNCE_CORRUPT_PROBE, corrupt)
    for c in replicas:
        _wait(
            f"inference {c[:12]} refusing {corrupt}",
            SWAP_LIMIT_S,
            lambda c=c: _inference_status(stack, c)["counters"]["models_rejected"] > rejected[c],
        )
        direct = stack.command("inference", "push_model", {"version": corrupt}, container=c)
        assert not direct["ok"] and "sha256" in direct["error"], direct
        status = _inference_status(stack, c)
        assert "sha256" in status["last_rejection"], status["last_rejection"]
        assert status["model"]["version"] == version, status["model"]
        assert _started(c) == before[c], f"inference {c[:12]} was restarted"
    after_ns = time.time_ns()
    signals = stack.exec_py(
        "monitor", SIGNALS_PROBE, str(after_ns), str(len(STACK_SYMBOLS)), "1", str(SIGNAL_LIMIT_S),
        timeout=SIGNAL_LIMIT_S + 60,
    )  # fmt: skip
    assert signals and {s["model_version"] for s in signals} == {version}, signals[:10]
    report(f"pushed {version} ({made['source']} re-released) served by {len(replicas)} instance(s)")


def test_unauthenticated_kill_switch_is_refused(stack: Stack) -> None:
    n = len(stack.ledger_fills())
    tag = f"docker-test-{uuid.uuid4().hex[:8]}"
    replies = stack.exec_py("monitor", FORGED_COMMANDS_PROBE, tag)
    expected = {
        "wrong_key": "bad signature",
        "unsigned": "unsigned",
        "tampered": "bad signature",
        "stale": "stale",
        "replayed": "replayed",
    }
    assert sorted(replies) == sorted(expected), replies
    assert len(replies["replayed"]) == 2, replies["replayed"]
    first = replies["replayed"][0]
    assert first["ok"], f"the original of the replayed command was refused: {first}"
    refusals = {case: replies[case][-1] for case in expected}
    for case, reason in expected.items():
        reply = refusals[case]
        assert not reply["ok"], f"{case}: accepted {reply}"
        assert "unauthorised" in reply["error"] and reason in reply["error"], (case, reply)

    status = stack.command("execution", "status")
    assert status["ok"], status
    assert status["result"]["killed"] is False, status["result"]
    assert not status["result"]["trading_blocked"], status["result"]
    stack.wait_new_fills(n, "forged kill commands")  # still trading
    stack.assert_no_duplicate_orders()

    def refused_in_logs() -> dict[str, str] | None:
        out = stack.compose("logs", "--no-color", "--no-log-prefix", "execution", timeout=90)
        found: dict[str, str] = {}
        for line in out.stdout.splitlines():
            if "command_refused" not in line or tag not in line:
                continue
            entry = json.loads(line[line.index("{") :])
            if entry.get("event") == "command_refused":
                found[entry["sender"].removeprefix(f"{tag}-")] = entry["reason"]
        return found if found.keys() == expected.keys() else None

    logged = _wait("execution logging every refused command", 60, refused_in_logs)
    for case, reason in expected.items():
        assert reason in logged[case], (case, logged[case])


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


def test_down_and_up_again_keeps_one_coherent_account(
    stack: Stack, report: Callable[[str], None]
) -> None:
    """`make down` then `make up` (volumes kept), as a user would: nothing lost or booked twice,
    no false daily-loss halt, equity continuous before the first new bar, the replay resumes.
    Runs after the ledger test, which stopped marketdata and let everything settle."""

    def pnl() -> dict[str, Any]:
        out = stack.compose("exec", "-T", "monitor", "python", "-m", "monitor.query", "pnl")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def execution_status() -> dict[str, Any]:
        reply = stack.command("execution", "status")
        assert reply["ok"], reply
        status: dict[str, Any] = reply["result"]
        return status

    fills_before = {f["exec_id"] for f in stack.ledger_fills()}
    equity_before = pnl()["equity"]
    stack.compose("down", "-t", "10", timeout=300)
    # the account side first: no bars yet, so nothing may move equity
    account_side = [s for s in ("bus", "ibsim", "monitor", "execution") if s in SERVICES]
    stack.compose("up", "-d", "--wait", "--wait-timeout", str(STARTUP_LIMIT_S), *account_side,
                  timeout=STARTUP_LIMIT_S + 60)  # fmt: skip
    status = execution_status()
    assert not status["halted_day"] and not status["killed"], status
    assert pnl()["equity"] == pytest.approx(equity_before, abs=0.01)
    assert {f["exec_id"] for f in stack.ledger_fills()} == fills_before
    assert {e["exec_id"] for e in stack.sim("executions")} == fills_before  # simulator kept state
    # then the rest: the replay resumes from its cursor and trading goes on, nothing twice
    stack.compose("up", "-d", "--wait", "--wait-timeout", str(STARTUP_LIMIT_S), *SERVICES,
                  timeout=STARTUP_LIMIT_S + 60)  # fmt: skip
    stack.wait_new_fills(len(fills_before), "down and up again")
    stack.assert_no_duplicate_orders()
    ledger = stack.ledger_fills()
    assert len({f["exec_id"] for f in ledger}) == len(ledger)
    report(f"down/up: equity {equity_before:.2f} kept; {len(ledger) - len(fills_before)} new fills")
