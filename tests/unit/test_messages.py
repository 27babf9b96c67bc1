import msgspec
import pytest

from shared import messages as m

pytestmark = pytest.mark.unit

EXAMPLES: list[m.Message] = [
    m.Bar(
        symbol="AAPL",
        timeframe="1d",
        bar_open_ts=1,
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        volume=10.0,
        ts_event=2,
    ),
    m.TargetPosition(
        symbol="AAPL",
        target_position=-1.0,
        model_version="v1",
        bar_seq=7,
        bar_close_ts=2,
        bar_close=1.5,
    ),
    m.OrderEvent(
        symbol="AAPL",
        order_ref="rl-AAPL-7",
        side="BUY",
        quantity=10,
        order_type="MKT",
        status="submitted",
        bar_seq=7,
    ),
    m.Fill(
        symbol="AAPL",
        exec_id="e1",
        order_ref="rl-AAPL-7",
        side="SELL",
        quantity=3,
        price=10.5,
        commission=1.0,
    ),
    m.Position(symbol="AAPL", quantity=-3, avg_cost=10.5),
    m.PnL(
        account="DU1",
        realized=1.0,
        unrealized=-2.0,
        fees=1.0,
        equity=99.0,
        positions={"AAPL": -3.0},
    ),
    m.Heartbeat(service="execution", ready=True, detail={"orders": 3}),
    m.ModelUpdated(version="v2", path="models/v2", onnx_sha256="ab" * 32),
    m.ModelStatus(
        instance="i1",
        serving_version="v1",
        requested_version="v2",
        accepted=False,
        reason="fingerprint mismatch",
    ),
    m.ShadowTarget(
        symbol="AAPL",
        target_position=0.5,
        model_version="cand-2",
        bar_seq=7,
        bar_close_ts=2,
        bar_close=1.5,
    ),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda x: type(x).__name__)
def test_every_message_round_trips(message: m.Message) -> None:
    decoded = m.decode(m.encode(message))
    assert decoded == message
    assert type(decoded) is type(message)
    assert decoded.schema == m.SCHEMA_VERSION


def test_every_message_type_has_an_example() -> None:
    assert {type(x) for x in EXAMPLES} == set(m.ALL_MESSAGE_TYPES)


def test_topics_carry_kind_and_key() -> None:
    assert EXAMPLES[0].topic() == "bar.AAPL"
    assert EXAMPLES[1].topic() == "signal.AAPL"
    assert EXAMPLES[7].topic() == "model.updated"
    assert EXAMPLES[-1].topic() == "shadow.AAPL"


def test_shadow_target_never_decodes_as_a_live_target() -> None:
    shadow = EXAMPLES[-1]
    decoded = m.decode(m.encode(shadow))
    assert type(decoded) is m.ShadowTarget
    assert not isinstance(decoded, m.TargetPosition)  # no trading consumer can act on it
    live = m.decode(m.encode(EXAMPLES[1]))
    assert type(live) is m.TargetPosition


def test_bar_epoch_and_backfill_round_trip() -> None:
    bar = msgspec.structs.replace(EXAMPLES[0], epoch=3, backfill=True)
    decoded = m.decode(m.encode(bar))
    assert decoded == bar and decoded.epoch == 3 and decoded.backfill


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        EXAMPLES[0].close = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode({"kind": "nope"}),
        msgspec.msgpack.encode({"kind": "bar", "symbol": 3}),
    ],
)
def test_malformed_payload_raises_a_decode_error(payload: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        m.decode(payload)
