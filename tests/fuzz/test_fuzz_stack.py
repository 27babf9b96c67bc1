"""Fuzz tier: hypothesis-generated hostile frames and commands against the real running stack.

One stack per module (forwarder, IB gateway simulator, execution over ib_async, monitor,
marketdata replaying real bars, inference on the shipped baseline), every one a separate process
on real sockets. Each hypothesis example is a batch of hostile inputs in both directions: bus frames
(random bytes, and well-formed messages of every type carrying NaN, inf, negative, huge or absurd
values) published from every identity, from no key at all, and commands (random names, arguments
nested with non-string keys, non-ASCII MACs, random bytes) to every service's command port under
every identity. After each batch:
- every process is alive and answers ``status``;
- a good bar still produces a signal, and execution still decides on it;
- the monitor's ledger equals execution's journal (same exec ids, nothing else).
Bounded: a few dozen batches, well under five minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.auth import load_or_create_key, sign
from shared.bus import security_from_env
from shared.command_channel import call
from shared.keys import IDENTITIES
from shared.messages import (
    Bar,
    Command,
    Fill,
    Heartbeat,
    ModelStatus,
    ModelUpdated,
    OrderEvent,
    PnL,
    Position,
    TargetPosition,
    encode,
)
from tests.conftest import free_port
from tests.processes import Stack, wait_for, wait_ready

pytestmark = pytest.mark.fuzz

SERVICES = ("marketdata", "inference", "execution", "monitor")
BATCHES = int(os.environ.get("FUZZ_BATCHES", "25"))
MUTATING = {"kill", "flatten", "rearm", "reduce_only", "push_model", "rollback", "train"}

# ---------------------------------------------------------------- strategies

hostile_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, -1e308, 1e308, 1e-320, 5e-324, 1.0, 100.0]),
)
hostile_int = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 2**63 - 1, time.time_ns(), time.time_ns() + 10**18]),
)
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "AAPL", "NVDA", "A" * 300, "é\x00\n", "../../etc/passwd", "bar.AAPL"]),
)
symbol = st.one_of(st.sampled_from(["AAPL", "NVDA"]), hostile_text)
side = st.sampled_from(["BUY", "SELL"])


def envelope() -> dict[str, Any]:
    return {"producer": hostile_text, "seq": hostile_int, "ts_event": hostile_int}


messages = st.one_of(
    st.builds(Bar, symbol=symbol, timeframe=hostile_text, bar_open_ts=hostile_int,
              open=hostile_float, high=hostile_float, low=hostile_float, close=hostile_float,
              volume=hostile_float, **envelope()),
    st.builds(TargetPosition, symbol=symbol, target_position=hostile_float,
              model_version=hostile_text, bar_seq=hostile_int, bar_close_ts=hostile_int,
              bar_close=hostile_float, **envelope()),
    st.builds(Fill, symbol=symbol, exec_id=hostile_text, order_ref=hostile_text, side=side,
              quantity=hostile_float, price=hostile_float, commission=hostile_float,
              **envelope()),
    st.builds(OrderEvent, symbol=symbol, order_ref=hostile_text, side=side,
              quantity=hostile_float, order_type=hostile_text,
              status=st.sampled_from(["submitted", "filled", "rejected"]), bar_seq=hostile_int,
              **envelope()),
    st.builds(Position, symbol=symbol, quantity=hostile_float, avg_cost=hostile_float,
              **envelope()),
    st.builds(PnL, account=hostile_text, realized=hostile_float, unrealized=hostile_float,
              fees=hostile_float, equity=hostile_float,
              positions=st.dictionaries(hostile_text, hostile_float, max_size=3), **envelope()),
    st.builds(Heartbeat, service=st.sampled_from(["inference", "marketdata", "x"]),
              ready=st.booleans(), detail=st.dictionaries(hostile_text, hostile_float, max_size=3),
              **envelope()),
    st.builds(ModelUpdated, version=hostile_text, path=hostile_text, onnx_sha256=hostile_text,
              mac=hostile_text, nonce=hostile_text, **envelope()),
    st.builds(ModelStatus, instance=hostile_text, serving_version=hostile_text,
              requested_version=hostile_text, accepted=st.booleans(), **envelope()),
)  # fmt: skip

publisher_identity = st.sampled_from([*IDENTITIES, "none"])
topic = st.one_of(
    st.sampled_from([b"bar.AAPL", b"bar.NVDA", b"signal.AAPL", b"fill.AAPL", b"order.AAPL",
                     b"hb.inference", b"model.updated", b"position.AAPL"]),
    st.binary(max_size=40),
)  # fmt: skip
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), hostile_int, hostile_float, hostile_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(hostile_text, st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)
command_names = st.one_of(
    st.sampled_from(["status", "kill", "flatten", "rearm", "reduce_only", "push_model",
                     "rollback", "snapshot", "fills", "orders", "positions", "pnl", "train"]),
    hostile_text,
)  # fmt: skip

frame_action = st.tuples(
    st.just("frame"),
    publisher_identity,
    st.booleans(),  # stamp the sender's own producer name, so the message meets validation
    st.one_of(
        messages.map(lambda m: (m.topic().encode(errors="replace"), m)),
        st.tuples(topic, st.binary(max_size=200)),
    ),
)
command_action = st.tuples(
    st.just("command"),
    st.sampled_from(SERVICES),
    st.sampled_from([*IDENTITIES, "none"]),
    command_names,
    st.one_of(st.dictionaries(hostile_text, json_like, max_size=4), json_like),
    st.sampled_from(["signed", "bad_mac", "non_ascii_mac", "raw_bytes"]),
)
actions = st.lists(st.one_of(frame_action, command_action), min_size=5, max_size=25)


# ---------------------------------------------------------------- the stack


class Attacker:
    """Sockets for every identity (and none) on the bus and every command port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.key = load_or_create_key(env["BUS_SECRET_FILE"])
        self.publishers: dict[str, zmq.Socket[bytes]] = {}
        for identity in [*IDENTITIES, "none"]:
            sock = self.ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.LINGER, 0)
            if identity != "none":
                security = security_from_env(identity, env)
                assert security is not None
                security.client(sock, "bus")
            sock.connect(env["BUS_PUB_ENDPOINT"])
            self.publishers[identity] = sock
        self.encoder = msgspec.msgpack.Encoder()

    def frame(self, identity: str, own_name: bool, payload: tuple[bytes, Any]) -> None:
        topic_bytes, body = payload
        if own_name and not isinstance(body, bytes):
            body = msgspec.structs.replace(body, producer=f"{identity}@fuzz:1:0")
        data = body if isinstance(body, bytes) else encode(body)
        self.publishers[identity].send_multipart([topic_bytes, data], zmq.NOBLOCK)

    def command(self, service: str, identity: str, name: str, args: Any, variant: str) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if identity != "none":
            security = security_from_env(identity, self.env)
            assert security is not None
            security.client(sock, service)
        sock.connect(self.env[f"{service.upper()}_CMD_ENDPOINT"])
        try:
            if variant == "raw_bytes":
                payload = self.encoder.encode(args) if not isinstance(args, bytes) else args
            else:
                raw = {"name": name, "args": args, "request_id": "fuzz", "ts": time.time_ns(),
                       "nonce": "", "sender": "fuzz"}  # fmt: skip
                if variant == "signed":
                    try:
                        command = msgspec.convert(raw, Command)
                        payload = self.encoder.encode(sign(command, self.key))
                    except (msgspec.ValidationError, TypeError, ValueError):
                        payload = self.encoder.encode({**raw, "mac": "0" * 64})
                else:
                    mac = "é" * 64 if variant == "non_ascii_mac" else "0" * 64
                    payload = self.encoder.encode({**raw, "mac": mac})
            sock.send_multipart([b"", payload], zmq.NOBLOCK)
            # an authenticated sender gets an answer; an unauthenticated one never connects
            if identity != "none":
                sock.poll(3000)
        except (zmq.ZMQError, TypeError, ValueError, OverflowError):
            pass  # our encoder refused the value: nothing was sent
        finally:
            sock.close()

    def close(self) -> None:
        self.ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    ib_port, control_port = free_port(), free_port()
    env = {
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SECRET_FILE": str(tmp / "secrets" / "bus.key"),
        "BUS_HEARTBEAT_INTERVAL_S": "0.5",
        **{f"{s.upper()}_CMD_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"
           for s in ("marketdata", "inference", "execution", "trainer", "monitor")},
        "IBSIM_PORT": str(ib_port),
        "IBSIM_CONTROL_PORT": str(control_port),
        "IBSIM_STATE_DIR": str(tmp / "ibsim"),
        "IBSIM_PRICE_SOURCE": "bus",  # test-only: the simulator fills on the replayed bus bars
        "IB_PORT": str(ib_port),
        "IB_CLIENT_ID": "31",
        "EXECUTION_BROKER": "ib",
        "EXECUTION_STATE_DIR": str(tmp / "execution"),
        "EXECUTION_SYMBOLS": "AAPL,NVDA",
        "EXECUTION_MAX_ORDERS_PER_MINUTE": "10000",
        "EXECUTION_HEARTBEAT_TIMEOUT_S": "120",
        "MONITOR_LEDGER_PATH": str(tmp / "ledger.sqlite"),
        "MONITOR_HTTP_PORT": str(free_port()),
        "MONITOR_RECONCILE_INTERVAL_S": "2",
        "MARKETDATA_SYMBOLS": "AAPL,NVDA",
        "MARKETDATA_REPLAY_START": "2019-01-01",
        "MARKETDATA_BARS_PER_SECOND": "8",
        "MARKETDATA_LOOP": "true",
        "MARKETDATA_START_DELAY_S": "6",
        "MARKETDATA_STATE_DIR": str(tmp / "md"),
        "INFERENCE_MODEL_VERSION": "baseline",
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        procs = Stack(env, tmp)
        procs.start("bus", "shared.busproxy")
        procs.start("ibsim", "ibsim")
        key = load_or_create_key(env["BUS_SECRET_FILE"])
        try:
            procs.start("monitor", "monitor")
            procs.start("execution", "execution")
            wait_ready(env["EXECUTION_CMD_ENDPOINT"], key)
            procs.start("marketdata", "marketdata")
            wait_ready(env["MARKETDATA_CMD_ENDPOINT"], key)
            procs.start("inference", "inference")
            for service in SERVICES:
                wait_ready(env[f"{service.upper()}_CMD_ENDPOINT"], key)
            attacker = Attacker(env)
            yield {"env": env, "key": key, "procs": procs, "attacker": attacker, "logs": tmp}
            attacker.close()
        finally:
            procs.stop()


def status(env: dict[str, str], key: bytes, service: str) -> dict[str, Any]:
    return call(env[f"{service.upper()}_CMD_ENDPOINT"], "status", {}, key, timeout_s=10)


def check_invariants(stack: dict[str, Any]) -> None:
    env, key, procs = stack["env"], stack["key"], stack["procs"]
    for name, proc in procs.procs.items():
        assert proc.poll() is None, f"{name} died: see {stack['logs']}/{name}.log"
    before = {service: status(env, key, service) for service in SERVICES}
    # a good (real, replayed) bar still produces a signal, and execution still decides on it
    signals_before = before["execution"]["signals"]
    wait_for(
        lambda: status(env, key, "execution")["signals"] > signals_before,
        "a new signal decided by execution",
    )

    # the ledger equals the journal: same exec ids, nothing booked that execution did not book
    def ledger_matches() -> bool:
        journal = call(env["EXECUTION_CMD_ENDPOINT"], "fills", {}, key, timeout_s=10)
        ledger = call(env["MONITOR_CMD_ENDPOINT"], "fills", {}, key, timeout_s=10)
        return sorted(f["exec_id"] for f in journal) == sorted(f["exec_id"] for f in ledger)

    wait_for(ledger_matches, "the ledger to equal execution's journal", timeout_s=30)


@settings(
    max_examples=BATCHES,
    deadline=None,
    derandomize=True,  # the same batches in CI and here: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=actions)
def test_hostile_batches_never_stop_or_mislead_the_stack(stack: dict[str, Any], batch) -> None:
    attacker: Attacker = stack["attacker"]
    for action in batch:
        if action[0] == "frame":
            _, identity, own_name, payload = action
            with contextlib.suppress(
                zmq.Again, TypeError, ValueError, OverflowError, UnicodeEncodeError
            ):
                attacker.frame(identity, own_name, payload)
        else:
            _, service, identity, name, args, variant = action
            if identity == "operator" and variant == "signed" and name in MUTATING:
                continue  # the operator's own signed kill is not an attack: it is the product
            attacker.command(service, identity, name, args, variant)
    check_invariants(stack)


def test_after_the_fuzzing_the_stack_traded_and_nothing_hostile_reached_state(stack) -> None:
    env, key = stack["env"], stack["key"]
    execution = status(env, key, "execution")
    assert execution["killed"] is False, "a fuzzed command killed trading"
    journal = call(env["EXECUTION_CMD_ENDPOINT"], "fills", {}, key, timeout_s=10)
    assert journal, "no order was filled during the fuzzing: the good path was never exercised"
    for service in SERVICES:
        assert status(env, key, service).get("ready") in (True, None)
    ledger = call(env["MONITOR_CMD_ENDPOINT"], "fills", {}, key, timeout_s=10)
    assert sorted(f["exec_id"] for f in ledger) == sorted(f["exec_id"] for f in journal)
    for fill in ledger:
        assert fill["quantity"] > 0 and 0 < fill["price"] < 1e6
