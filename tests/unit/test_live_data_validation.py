"""Bar validation before publish, the epoch counter and the exchange-calendar helper."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pandas as pd
import pytest
from marketdata.pipeline import BarPipeline, EpochCounter
from marketdata.validation import BarValidator, Quarantine, Verdict

from shared import sessions
from shared.barstore import BarStore
from shared.messages import Bar

pytestmark = pytest.mark.unit

NS = 1_000_000_000


def daily(day: str, close: float = 100.0, **changes) -> Bar:
    close_ns = sessions.session_close_ns(dt.date.fromisoformat(day))
    values = dict(
        symbol="AAPL",
        timeframe="1d",
        bar_open_ts=close_ns - 3600 * NS,
        open=close,
        high=close + 1,
        low=close - 1,
        close=close,
        volume=1000.0,
        ts_event=close_ns,
    )
    values.update(changes)
    return Bar(**values)


def test_sessions_half_days_gaps_and_closed_until() -> None:
    half_day = pd.Timestamp(sessions.session_close_ns(dt.date(2023, 7, 3)))
    assert half_day == pd.Timestamp("2023-07-03 17:00")  # 13:00 New York
    assert pd.Timestamp(sessions.session_close_ns(dt.date(2023, 7, 5))).hour == 20
    wed = sessions.session_close_ns(dt.date(2023, 11, 22))
    tue = sessions.session_close_ns(dt.date(2023, 11, 28))
    assert sessions.missing_sessions(wed, tue) == 2  # Fri 24 (half day) and Mon 27
    saturday = pd.Timestamp("2023-11-25 12:00", tz="UTC").value
    assert sessions.market_closed_until(saturday) == "closed until 2023-11-27T14:30:00+00:00"
    assert sessions.market_closed_until(pd.Timestamp("2023-11-27 15:00", tz="UTC").value) is None


def test_validator_publishes_drops_duplicates_quarantines_and_counts_gaps(tmp_path) -> None:
    quarantine = Quarantine(tmp_path / "q.sqlite")
    validator = BarValidator(quarantine, clock=lambda: 0.0)
    first = daily("2023-06-01")
    assert validator.check(first) is Verdict.PUBLISH
    assert validator.check(first) is Verdict.DUPLICATE  # exact repeat: dropped, counted
    assert validator.check(daily("2023-06-01", 101.0)) is Verdict.QUARANTINED  # conflicting
    assert validator.check(daily("2023-06-02", high=90.0)) is Verdict.QUARANTINED  # high < open
    assert validator.check(daily("2023-06-02", low=150.0)) is Verdict.QUARANTINED
    assert validator.check(daily("2023-06-02", volume=-1.0)) is Verdict.QUARANTINED
    assert validator.check(daily("2023-06-02", open=float("nan"))) is Verdict.QUARANTINED
    assert validator.check(daily("2023-06-07")) is Verdict.PUBLISH  # Fri, Mon, Tue missing
    assert validator.check(daily("2023-06-06")) is Verdict.QUARANTINED  # not monotonic
    status = validator.status()
    assert status["duplicates_dropped"] == 1 and status["gaps"] == 3
    assert status["quarantined"] == 6
    rows = quarantine.rows()
    assert [r["reason"].split(":")[0] for r in rows] == [
        "conflicting duplicate",
        "ohlc",
        "ohlc",
        "ohlc",
        "ohlc",
        "not monotonic",
    ]
    assert rows[0]["bar"]["close"] == 101.0  # the bar is kept with its reason
    quarantine.close()
    with sqlite3.connect(tmp_path / "q.sqlite") as db:  # durable, for the operator
        assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone() == (6,)


def test_pipeline_stamps_epoch_publishes_once_and_stores(tmp_path) -> None:
    published: list[Bar] = []
    pipeline = BarPipeline(tmp_path, published.append)
    assert pipeline.epoch == 1
    warm = pipeline.offer(daily("2023-05-31"), publish=False)
    assert warm is not None and warm.epoch == 1 and published == []
    pipeline.new_epoch()
    pipeline.offer(daily("2023-06-01"), backfill=True)
    pipeline.offer(daily("2023-06-01"))  # the live copy of a backfilled bar: not again
    pipeline.offer(daily("2023-06-02", high=1.0))  # quarantined, never published
    pipeline.offer(daily("2023-06-05"))
    assert [(b.epoch, b.backfill) for b in published] == [(2, True), (2, False)]
    status = pipeline.status()
    assert status["epoch"] == 2 and status["quarantined"] == 1 and status["backfilled"] == 1
    assert status["last_bar_close_ts"] == published[-1].ts_event
    pipeline.close()
    with BarStore(tmp_path / "bars.sqlite") as store:  # every published bar, nothing else
        assert store.count() == 2
    assert EpochCounter(tmp_path / "epoch.json").bump() == 3  # persisted: a restart goes on


def test_ib_heartbeat_says_when_a_closed_market_opens_and_carries_epoch(tmp_path) -> None:
    import time

    from marketdata.config import MarketDataSettings
    from marketdata.ib_source import IbBarSource

    settings = MarketDataSettings(source="ib", symbols=("AAPL",), state_dir=str(tmp_path))
    source = IbBarSource(settings, None, publish=lambda bar: None)
    assert source.status_detail()["market"] == "unknown (not connected)"
    source.connected = True
    saturday = pd.Timestamp("2023-11-25 12:00", tz="UTC").value
    source._clock_offset_ns = saturday - time.time_ns()  # the gateway's clock says Saturday
    detail = source.status_detail()
    assert detail["market"].startswith("closed until 2023-11-27T14:3")
    assert detail["epoch"] == 1 and detail["quarantined"] == 0
    assert "last_bar_close_ts" in detail
    source.pipeline.close()
