"""A host crash under EXECUTION_JOURNAL_SYNC=normal can lose the journal's last seconds: a fill of
one of OUR orders whose reservation is gone is adopted (journalled from the fill, booked and
published once); anything that is not ours stays foreign."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from execution.order_journal import OrderState

from shared.messages import Fill
from tests.unit.test_execution_reconcile import Rig, fill

pytestmark = pytest.mark.unit


def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)  # a fresh journal: the reservation was lost with the host
    r.counters["adopted_orders"] = 0
    return r


async def test_a_fill_of_our_lost_order_is_adopted_and_published_once(tmp_path: Path) -> None:
    r = rig(tmp_path)
    await r.rec.handle(fill(ref="rl-AAPL-7"))
    entry = r.journal.get("rl-AAPL-7")
    assert entry is not None and (entry.state, entry.bar_seq, entry.side) == ("sent", 7, "BUY")
    assert r.journal.bar_ts_of("rl-AAPL-7") is not None  # a replayed signal is a duplicate now
    assert [f.exec_id for f in r.of(Fill)] == ["e1"] and r.counters["adopted_orders"] == 1
    assert r.book.quantity("AAPL") == 10.0 and r.counters["fills"] == 1
    await r.rec.handle(fill(ref="rl-AAPL-7"))  # recovered again after another reconnect
    assert len(r.of(Fill)) == 1 and r.counters["adopted_orders"] == 1
    assert r.journal.advance("rl-AAPL-7", OrderState.FILLED)  # the lifecycle goes on from there


@pytest.mark.parametrize("ref", ["rl-AAPL-7-tp", "flat-AAPL-kill-3"])
async def test_bracket_children_and_flattening_are_ours_too(tmp_path: Path, ref: str) -> None:
    r = rig(tmp_path)
    await r.rec.handle(fill(ref=ref))
    assert r.journal.has(ref) and len(r.of(Fill)) == 1


@pytest.mark.parametrize(
    ("ref", "symbol"),
    [
        ("manual-order", "AAPL"),  # not our format
        ("rl-MSFT-7", "AAPL"),  # our format, another symbol than the fill's
        ("rl-TSLA-7", "TSLA"),  # a symbol this service does not trade
        ("", "AAPL"),  # no reference (a TWS order)
    ],
)
async def test_what_is_not_ours_stays_foreign(tmp_path: Path, ref: str, symbol: str) -> None:
    r = rig(tmp_path)
    await r.rec.handle(msgspec.structs.replace(fill(ref=ref), symbol=symbol))
    assert not r.journal.orders() and not r.sent and r.counters["adopted_orders"] == 0
