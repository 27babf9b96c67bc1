"""The reconciler alone: broker events -> journal, position book and bus, and reconciliation."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from execution.broker import (
    BrokerFill,
    BrokerPosition,
    ConnectionChange,
    OrderRequest,
    OrderUpdate,
    WorkingOrder,
)
from execution.order_journal import OrderJournal
from execution.positions import PositionBook
from execution.reconcile import Reconciler
from execution.safety import SafetySwitches

from shared.messages import Fill, Message, OrderEvent, Position

pytestmark = pytest.mark.unit

COUNTERS = ("fills", "recovered_fills", "rejected", "reconnects", "handler_errors")


class FakeBroker:
    name = "fake"
    account = "DU123"

    def __init__(self, paper: bool = True) -> None:
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.paper = paper
        self.reported: dict[str, BrokerPosition] = {}
        self.recoverable: list[BrokerFill] = []
        self.known: set[str] = set()

    def is_paper(self) -> bool:
        return self.paper

    def positions(self) -> dict[str, BrokerPosition]:
        return dict(self.reported)

    async def recover_fills(self, since_ns: int) -> list[BrokerFill]:
        return list(self.recoverable)

    def known_order_refs(self) -> set[str]:
        return set(self.known)

    def working_orders(self) -> list[WorkingOrder]:
        return []


class Rig:
    def __init__(self, tmp: Path, broker: FakeBroker | None = None, confirmed: bool = False):
        self.broker = broker or FakeBroker()
        self.journal = OrderJournal(tmp / "journal.sqlite")
        self.book = PositionBook()
        self.safety = SafetySwitches(self.journal)
        self.sent: list[Message] = []
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.errors: list[tuple[str, str]] = []
        self.rec = Reconciler(
            broker=self.broker,  # type: ignore[arg-type]
            journal=self.journal,
            book=self.book,
            safety=self.safety,
            publish=self.sent.append,
            symbols=frozenset({"AAPL", "MSFT"}),
            counters=self.counters,
            on_error=lambda where, detail: self.errors.append((where, detail)),
            live_confirmed=confirmed,
            paper_path="paper.json",
        )

    def order(self, ref: str = "rl-AAPL-1", quantity: int = 10) -> OrderRequest:
        order = OrderRequest(order_ref=ref, symbol="AAPL", side="BUY", quantity=quantity)
        assert self.journal.reserve(order)
        self.broker.known.add(ref)
        return order

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


def fill(exec_id: str = "e1", ref: str = "rl-AAPL-1", qty: float = 10.0, **kw: Any) -> BrokerFill:
    return BrokerFill(
        exec_id=exec_id,
        order_ref=ref,
        symbol="AAPL",
        side="BUY",
        quantity=qty,
        price=100.0,
        commission=1.0,
        **kw,
    )


async def test_a_fill_updates_the_overlay_and_the_journal_exactly_once(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    r.order()
    ev = fill()
    await r.rec.handle(ev)
    await r.rec.handle(ev)  # the broker repeats it (a reconnect, a re-request)
    assert r.book.quantity("AAPL") == 10.0
    assert r.journal.filled_quantity("rl-AAPL-1") == 10.0
    assert len(r.journal.fills()) == 1
    published = r.of(Fill)
    assert len(published) == 1 and published[0].exec_id == "e1"
    assert published[0].account == "DU123"  # the broker's account when the fill has none
    assert r.counters["fills"] == 1 and r.counters["recovered_fills"] == 0


async def test_a_foreign_fill_touches_nothing(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    await r.rec.handle(fill(ref="manual-order"))
    assert r.book.quantity("AAPL") == 0.0 and not r.journal.fills() and not r.sent
    assert r.counters["fills"] == 0


async def test_the_broker_position_report_replaces_the_overlay_and_is_published(
    tmp_path: Path,
) -> None:
    r = Rig(tmp_path)
    r.order()
    await r.rec.handle(fill())
    await r.rec.handle(BrokerPosition(symbol="AAPL", quantity=10.0, avg_cost=100.5))
    assert r.book.quantity("AAPL") == 10.0  # not 20: the report includes the fill
    (pos,) = r.of(Position)
    assert (pos.symbol, pos.quantity, pos.avg_cost, pos.account) == ("AAPL", 10.0, 100.5, "DU123")


async def test_a_rejection_advances_the_journal_counts_and_publishes(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    r.order()
    up = OrderUpdate(order_ref="rl-AAPL-1", symbol="AAPL", status="rejected", error_code=201)
    await r.rec.handle(up)
    await r.rec.handle(up)  # a repeated report does not count twice
    assert r.journal.get("rl-AAPL-1").state == "rejected"  # type: ignore[union-attr]
    assert r.counters["rejected"] == 1
    (ev,) = r.of(OrderEvent)
    assert ev.status == "rejected" and ev.reason.startswith("IB error 201")


async def test_a_handler_failure_goes_to_on_error_and_the_next_event_is_handled(
    tmp_path: Path,
) -> None:
    r = Rig(tmp_path)

    def broken(_up: OrderUpdate) -> None:
        raise RuntimeError("injected")

    r.rec.on_order_update = broken  # type: ignore[method-assign]
    await r.rec.handle(OrderUpdate(order_ref="x", symbol="AAPL", status="acknowledged"))
    await r.rec.handle(BrokerPosition(symbol="MSFT", quantity=3.0))
    assert r.errors == [("broker", "OrderUpdate")]
    assert r.book.quantity("MSFT") == 3.0


async def test_reconcile_corrects_a_book_that_differs_from_the_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = Rig(tmp_path)
    await r.rec.handle(ConnectionChange(connected=True))  # the first reconciliation: all flat
    r.sent.clear()
    await r.rec.handle(BrokerPosition(symbol="AAPL", quantity=10.0, avg_cost=100.0))
    r.sent.clear()
    r.broker.reported = {"AAPL": BrokerPosition(symbol="AAPL", quantity=4.0, avg_cost=101.0)}
    with caplog.at_level(logging.INFO, logger="execution"):
        await r.rec.handle(ConnectionChange(connected=False, reason="socket"))
        await r.rec.handle(ConnectionChange(connected=True))
    assert r.book.quantity("AAPL") == 4.0
    published = {p.symbol: p.quantity for p in r.of(Position)}
    assert published == {"AAPL": 4.0, "MSFT": 0.0}  # every configured symbol, flat included
    corrected = [rec for rec in caplog.records if rec.getMessage() == "positions_corrected"]
    assert len(corrected) == 1 and corrected[0].levelno == logging.WARNING
    assert corrected[0].fields["positions"] == {"AAPL": {"book": 10.0, "broker": 4.0}}  # type: ignore[attr-defined]
    assert r.counters["reconnects"] == 2


async def test_reconcile_books_recovered_fills_and_loses_unknown_reservations(
    tmp_path: Path,
) -> None:
    r = Rig(tmp_path)
    r.order("rl-AAPL-1")
    r.journal.reserve(OrderRequest(order_ref="rl-AAPL-2", symbol="AAPL", side="BUY", quantity=5))
    r.broker.recoverable = [fill("e9")]
    r.broker.reported = {"AAPL": BrokerPosition(symbol="AAPL", quantity=10.0)}
    await r.rec.reconcile()
    assert r.counters["fills"] == 1 and r.counters["recovered_fills"] == 1
    assert r.book.quantity("AAPL") == 10.0  # the report, not report + recovered fill
    assert r.journal.get("rl-AAPL-2").state == "lost"  # type: ignore[union-attr]
    assert r.journal.get("rl-AAPL-1").state != "lost"  # type: ignore[union-attr]


async def test_live_guard_refuses_an_unconfirmed_live_account(tmp_path: Path) -> None:
    r = Rig(tmp_path, FakeBroker(paper=False))
    await r.rec.handle(ConnectionChange(connected=True))
    assert "LIVE account" in r.safety.live_refused and "paper.json" in r.safety.live_refused
    (tmp_path / "ok").mkdir()
    ok = Rig(tmp_path / "ok", FakeBroker(paper=False), confirmed=True)
    await ok.rec.handle(ConnectionChange(connected=True))
    assert ok.safety.live_refused == ""
