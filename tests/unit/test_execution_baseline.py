"""One account truth for the daily-loss limit: the broker's account is the baseline's source, per
trading day and per account, and it survives restarts (issue 11)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from execution.daily_baseline import DailyBaseline, decode_baseline, next_baseline
from execution.input_guard import StateFileError
from execution.order_journal import OrderJournal

from tests.unit.test_execution_service import MONDAY, Harness

pytestmark = pytest.mark.unit

TUESDAY = MONDAY + dt.timedelta(days=1)
WEDNESDAY = MONDAY + dt.timedelta(days=2)


def test_next_baseline_rules() -> None:
    first = next_baseline(None, day="d1", account="A", equity=100.0)
    assert (first.start_equity, first.last_equity) == (100.0, 100.0)
    same_day = next_baseline(first, day="d1", account="A", equity=90.0)
    assert (same_day.start_equity, same_day.last_equity) == (100.0, 90.0)
    next_day = next_baseline(same_day, day="d2", account="A", equity=95.0)
    assert next_day.start_equity == 90.0  # the previous close of the same account
    other_account = next_baseline(next_day, day="d2", account="B", equity=1_000.0)
    assert other_account.start_equity == 1_000.0
    with pytest.raises(ValueError):
        next_baseline(first, day="d1", account="A", equity=math.nan)


def test_decode_baseline_refuses_malformed_or_non_finite() -> None:
    good = DailyBaseline(day="d", account="A", start_equity=1.0, last_equity=2.0)
    assert (
        decode_baseline({"day": "d", "account": "A", "start_equity": 1, "last_equity": 2}) == good
    )
    assert decode_baseline(None) is None
    with pytest.raises(ValueError):
        decode_baseline({"day": "d"})
    with pytest.raises(ValueError):
        decode_baseline({"day": "d", "account": "A", "start_equity": math.inf, "last_equity": 1})


async def _gain_on_tuesday(tmp: Path) -> Harness:
    """500 AAPL bought Monday, filled ~100 on Tuesday and marked 104: equity ~ +2,000."""
    h = await Harness(tmp, max_daily_loss=1000.0).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    await h.bar(TUESDAY, 100, 105, 99, 104)
    assert h.svc.positions["AAPL"].quantity == 500
    assert h.svc.broker_equity() > 101_000  # type: ignore[operator]
    assert h.svc.risk.halted_day == ""
    return h


async def test_restart_against_a_fresh_simulator_account_is_no_false_halt(tmp_path: Path) -> None:
    h = await _gain_on_tuesday(tmp_path)
    await h.broker.close()
    h.close()
    (tmp_path / "sim.json").unlink()  # the simulator starts a fresh account: 100,000
    h2 = await Harness(tmp_path, max_daily_loss=1000.0).start()
    await h2.bar(WEDNESDAY, 104, 105, 103, 104)
    assert h2.svc.risk.halted_day == ""
    assert h2.svc.baseline is not None
    assert h2.svc.baseline.start_equity == pytest.approx(100_000.0)
    assert h2.svc.status_detail()["daily_baseline"]["account"] == h2.broker.account_key
    h2.close()


async def test_same_day_restart_keeps_the_baseline_so_a_loss_still_halts(tmp_path: Path) -> None:
    h = await _gain_on_tuesday(tmp_path)
    start = h.svc.baseline.start_equity  # type: ignore[union-attr]
    await h.broker.close()
    h.close()
    h2 = await Harness(tmp_path, max_daily_loss=1000.0).start()  # same account, same day
    assert h2.svc.baseline is not None and h2.svc.baseline.start_equity == start
    await h2.bar(TUESDAY, 104, 104, 95, 97)  # 500 shares marked 97: ~1,500 below the start
    assert h2.svc.risk.halted_day == TUESDAY.isoformat()
    h2.close()


async def test_a_malformed_stored_baseline_stops_the_start_by_name(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "journal.sqlite")
    journal.set_value("daily_baseline", {"day": 3})
    journal.close()
    with pytest.raises(StateFileError, match=r"journal\.sqlite"):
        Harness(tmp_path)
