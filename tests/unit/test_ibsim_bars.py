"""Historical aggregation, 5-second bars, time parsing and pacing."""

import pytest
from ibsim.bars import (
    BarRequestError,
    BarStore,
    PacingLimiter,
    aggregate,
    five_second_bars,
    format_bar_time,
    parse_bar_size,
    parse_duration,
    parse_ib_time,
)
from ibsim.models import SourceBar

pytestmark = pytest.mark.unit

NS = 1_000_000_000
OPEN_S = 1_764_167_400  # 2025-11-26 14:30:00 UTC


def minute_bar(i: int, o: float, h: float, low: float, c: float, v: float = 10.0) -> SourceBar:
    start = (OPEN_S + 60 * i) * NS
    return SourceBar("AAPL", start, start + 60 * NS, o, h, low, c, v)


def test_parsers() -> None:
    assert parse_bar_size("5 mins") == 300
    assert parse_bar_size("1 day") == 86_400
    assert parse_duration("2 D") == 172_800
    assert parse_duration("3600 S") == 3600
    for bad in ("5 minutes", "0 mins", "mins"):
        with pytest.raises(BarRequestError):
            parse_bar_size(bad)
    with pytest.raises(BarRequestError):
        parse_duration("2 days")
    assert parse_ib_time("20251126 14:30:00 UTC") == OPEN_S * NS
    assert parse_ib_time("20251126-14:30:00") == OPEN_S * NS
    assert parse_ib_time("20251126 09:30:00 US/Eastern") == OPEN_S * NS
    with pytest.raises(BarRequestError):
        parse_ib_time("yesterday")


def test_aggregate_minutes_into_five_minute_bars() -> None:
    bars = [minute_bar(i, 100 + i, 101 + i, 99 + i, 100.5 + i) for i in range(7)]
    five = aggregate(bars, 300)
    assert [b.start_s for b in five] == [OPEN_S, OPEN_S + 300]
    first = five[0]
    assert (first.open, first.high, first.low, first.close) == (100, 105, 99, 104.5)
    assert first.volume == 50 and first.count == 5
    assert five[1].count == 2
    assert format_bar_time(first.start_s, 300, 1) == "20251126 14:30:00 UTC"
    assert format_bar_time(first.start_s, 86_400, 1) == "20251126"


def test_daily_bars_stamped_at_the_close_land_on_their_own_date() -> None:
    close = (OPEN_S + 6 * 3600 + 1800) * NS  # 21:00 UTC
    daily = SourceBar("AAPL", OPEN_S * NS, close, 1, 2, 0.5, 1.5, 100)
    (out,) = aggregate([daily], 86_400)
    assert format_bar_time(out.start_s, 86_400, 1) == "20251126"


def test_five_second_bars_reproduce_the_source_bar() -> None:
    for source in (minute_bar(0, 100, 103, 98, 102, 120), minute_bar(0, 100, 101, 95, 96, 12)):
        small = five_second_bars(source)
        assert len(small) == 12
        assert small[0].open == source.open and small[-1].close == source.close
        assert max(b.high for b in small) == source.high
        assert min(b.low for b in small) == source.low
        assert sum(b.volume for b in small) == pytest.approx(source.volume)
        assert [b.start_s for b in small] == [OPEN_S + 5 * i for i in range(12)]
        assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in small)


def test_bar_store_window_and_rewind() -> None:
    store = BarStore(max_bars_per_symbol=5)
    for i in range(8):
        store.add(minute_bar(i, 1, 1, 1, 1))
    latest = store.latest("AAPL")
    assert latest is not None and latest.close_ts == (OPEN_S + 480) * NS
    window = store.window("AAPL", (OPEN_S + 360) * NS, (OPEN_S + 480) * NS)
    assert [b.close_ts // NS - OPEN_S for b in window] == [420, 480]
    store.add(minute_bar(0, 2, 2, 2, 2))  # the replay started again
    assert len(store.window("AAPL", 0, 2**62)) == 1


def test_pacing_limiter() -> None:
    limiter = PacingLimiter(max_requests=3, window_s=10)
    assert [limiter.allow(t * NS) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert limiter.allow(10 * NS)  # the first request left the window
