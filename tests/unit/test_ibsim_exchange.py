"""Matching, orders, account and journal of the simulated broker (no sockets)."""

from pathlib import Path
from typing import Any

import pytest
from ibsim.commissions import CommissionSchedule
from ibsim.config import IbsimSettings
from ibsim.contracts import ContractRegistry
from ibsim.exchange import Exchange
from ibsim.faults import FaultSwitches
from ibsim.journal import ExecutionJournal
from ibsim.models import ContractQuery, ExecutionFilterQuery, OrderRequest, Status

pytestmark = pytest.mark.unit

NS = 1_000_000_000
T0 = 1_764_167_400 * NS


class Events:
    """Records what the exchange reports, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def order_changed(self, order: Any, open_order: bool) -> None:
        self.log.append(("status", (order.order_id, order.status)))

    def request_error(self, client_id: int, req_id: int, code: int, text: str) -> None:
        self.log.append(("error", (req_id, code, text)))

    def executed(self, order: Any, record: Any) -> None:
        self.log.append(("fill", (order.order_id, record.shares, record.price)))

    def portfolio_changed(self, symbol: str, traded: bool) -> None:
        pass

    def bar_added(self, bar: Any) -> None:
        pass

    def of(self, kind: str) -> list[Any]:
        return [value for k, value in self.log if k == kind]


def make_exchange(state_dir: str = "", **settings: Any) -> tuple[Exchange, Events]:
    config = IbsimSettings(slippage_bps=settings.pop("slippage_bps", 0.0), **settings)
    exchange = Exchange(
        config,
        ContractRegistry(config.universe),
        ExecutionJournal(state_dir),
        FaultSwitches(),
        clock=lambda: T0,
    )
    events = Events()
    exchange.listener = events
    return exchange, events


def order(
    order_id: int,
    action: str = "BUY",
    qty: float = 100,
    kind: str = "MKT",
    lmt: float | None = None,
    aux: float | None = None,
    symbol: str = "AAPL",
    **extra: Any,
) -> OrderRequest:
    return OrderRequest(
        order_id=order_id,
        contract=ContractQuery(symbol=symbol, sec_type="STK", exchange="SMART", currency="USD"),
        action=action,
        total_qty=qty,
        order_type=kind,
        lmt_price=lmt,
        aux_price=aux,
        order_ref=extra.pop("order_ref", f"ref-{order_id}"),
        **extra,
    )


def bar(
    exchange: Exchange, o: float, h: float, low: float, c: float, n: int = 1, symbol: str = "AAPL"
) -> int:
    return exchange.on_bar(symbol, T0 + n * 60 * NS, o, h, low, c, 1000.0)


def test_market_order_fills_at_next_bar_open_with_slippage() -> None:
    exchange, events = make_exchange(slippage_bps=10.0)
    bar(exchange, 99, 99, 99, 99, n=0)  # a bar before the order does not fill it
    placed = exchange.place_order(1, order(1))
    assert placed is not None and placed.status == Status.SUBMITTED
    assert events.of("fill") == []
    assert bar(exchange, 100, 101, 99, 100.5, n=1) == 1
    assert events.of("fill") == [(1, 100.0, pytest.approx(100.1))]
    assert placed.status == Status.FILLED
    sell = exchange.place_order(1, order(2, "SELL"))
    bar(exchange, 102, 103, 101, 102, n=2)
    assert sell is not None and sell.avg_fill_price == pytest.approx(102 * 0.999)


def test_a_bar_published_before_the_order_arrived_does_not_fill_it_even_when_it_arrives_late() -> (
    None
):
    """The bus price source: the bar an order was decided on may reach the simulator after the
    order (two paths, a loaded host). Its publication time says the order's sender had seen it,
    so the order fills at the NEXT bar's open, never at the open of the bar it reacted to."""
    exchange, events = make_exchange()  # the exchange's clock says the order came at T0
    placed = exchange.place_order(1, order(1))
    assert placed is not None
    late = exchange.on_bar("AAPL", T0 + 60 * NS, 100, 101, 99, 100.5, 1000.0, published_ns=T0 - 1)
    assert late == 0 and events.of("fill") == []
    on_time = exchange.on_bar("AAPL", T0 + 120 * NS, 105, 106, 104, 105, 1000.0, published_ns=T0)
    assert on_time == 0, "published at the very moment the order came: still seen before it"
    assert exchange.on_bar("AAPL", T0 + 180 * NS, 107, 108, 106, 107, 1000.0, published_ns=T0 + 1)
    assert events.of("fill") == [(1, 100.0, 107.0)]


def test_limit_orders_fill_when_the_range_crosses_with_gap_improvement() -> None:
    exchange, events = make_exchange()
    buy = exchange.place_order(1, order(1, kind="LMT", lmt=98.0))
    sell = exchange.place_order(1, order(2, "SELL", 10, kind="LMT", lmt=99.0))
    bar(exchange, 100, 101, 98.5, 100, n=1)  # low 98.5 does not reach 98
    assert buy is not None and buy.status == Status.SUBMITTED
    assert sell is not None and sell.avg_fill_price == 100.0  # opened above the limit: at open
    bar(exchange, 99, 99.5, 97.0, 97.5, n=2)
    assert buy.status == Status.FILLED and buy.avg_fill_price == 98.0
    assert [f[0] for f in events.of("fill")] == [2, 1]


def test_stop_orders_trigger_and_gap() -> None:
    exchange, _ = make_exchange(slippage_bps=0.0)
    stop_sell = exchange.place_order(1, order(1, "SELL", kind="STP", aux=95.0))
    stop_buy = exchange.place_order(1, order(2, "BUY", kind="STP", aux=105.0))
    bar(exchange, 100, 104, 96, 100, n=1)
    assert stop_sell is not None and stop_sell.status == Status.SUBMITTED
    bar(exchange, 93, 94, 92, 93, n=2)  # gaps through the stop: fills at the open
    assert stop_sell.avg_fill_price == 93.0
    bar(exchange, 100, 106, 99, 101, n=3)
    assert stop_buy is not None and stop_buy.avg_fill_price == 105.0


def test_bracket_children_wait_for_the_parent_then_one_cancels_the_other() -> None:
    exchange, events = make_exchange()
    parent = exchange.place_order(1, order(10, kind="LMT", lmt=100.0, transmit=False))
    take = exchange.place_order(
        1, order(11, "SELL", kind="LMT", lmt=110.0, parent_id=10, transmit=False)
    )
    assert events.log == []  # nothing transmitted yet
    stop = exchange.place_order(1, order(12, "SELL", kind="STP", aux=95.0, parent_id=10))
    assert parent and take and stop
    assert events.of("status") == [(10, "Submitted"), (11, "PreSubmitted"), (12, "PreSubmitted")]
    bar(exchange, 101, 112, 99, 111, n=1)  # parent fills at 100; children only from next bar
    assert parent.status == Status.FILLED
    assert take.status == Status.SUBMITTED and take.filled_qty == 0
    bar(exchange, 111, 112, 109, 110, n=2)
    assert take.status == Status.FILLED and take.avg_fill_price == 111.0
    assert stop.status == Status.CANCELLED and stop.done_reason == "Cancelled by System (OCA)"
    assert exchange.positions["AAPL"].quantity == 0


def test_when_one_bar_hits_both_children_the_stop_wins() -> None:
    exchange, _ = make_exchange()
    exchange.place_order(1, order(1, transmit=False))
    take = exchange.place_order(
        1, order(2, "SELL", kind="LMT", lmt=110, parent_id=1, transmit=False)
    )
    stop = exchange.place_order(1, order(3, "SELL", kind="STP", aux=95, parent_id=1))
    bar(exchange, 100, 100, 100, 100, n=1)
    bar(exchange, 100, 111, 94, 100, n=2)
    assert stop is not None and stop.status == Status.FILLED
    assert take is not None and take.status == Status.CANCELLED


def test_explicit_oca_group_type_1_cancels_the_rest() -> None:
    exchange, _ = make_exchange()
    first = exchange.place_order(1, order(1, kind="LMT", lmt=99, oca_group="g", oca_type=1))
    second = exchange.place_order(1, order(2, kind="LMT", lmt=90, oca_group="g", oca_type=1))
    bar(exchange, 100, 100, 98, 99, n=1)
    assert first is not None and first.status == Status.FILLED
    assert second is not None and second.status == Status.CANCELLED


def test_partial_fills_split_an_order_over_bars_and_charge_commission_per_order() -> None:
    exchange, events = make_exchange()
    exchange.faults.update({"partial_fill_fraction": 0.4})
    placed = exchange.place_order(1, order(1, qty=500))
    for n in range(1, 4):
        bar(exchange, 100, 100, 100, 100, n=n)
    assert placed is not None and placed.status == Status.FILLED
    assert [f[1] for f in events.of("fill")] == [200.0, 200.0, 100.0]
    commissions = [r.commission for r in exchange.executions]
    assert commissions == [1.0, 1.0, 0.5]  # 500 shares x 0.005 = 2.50 in total
    assert len({r.exec_id for r in exchange.executions}) == 3


def test_commission_schedule_min_max() -> None:
    schedule = CommissionSchedule()
    assert schedule.for_order(100, 10_000) == 1.0  # minimum
    assert schedule.for_order(1000, 100_000) == 5.0  # per share
    assert schedule.for_order(1000, 300) == 3.0  # at most 1% of value (penny stock)


def test_rejections_report_the_code_before_the_status() -> None:
    exchange, events = make_exchange()
    exchange.faults.update({"reject_next_n": 1, "reject_reason": "Trading halted"})
    rejected = exchange.place_order(1, order(1))
    assert rejected is not None and rejected.status == Status.CANCELLED
    assert events.log[:2] == [
        ("error", (1, 201, "Order rejected - reason:Trading halted")),
        ("status", (1, "Cancelled")),
    ]
    assert exchange.place_order(1, order(2)).status == Status.SUBMITTED  # only the next one
    unknown = exchange.place_order(1, order(3, symbol="NOPE"))
    assert unknown is not None and unknown.reject_code == 200
    assert events.log[-1][0] == "error"  # unknown contract: the error alone
    exchange.place_order(1, order(4, kind="TRAIL"))
    assert events.of("error")[-1][1] == 387
    exchange.place_order(1, order(5, kind="LMT"))
    assert events.of("error")[-1][1] == 201


def test_margin_rejection_like_ib() -> None:
    exchange, events = make_exchange(initial_cash=10_000.0)
    bar(exchange, 100, 100, 100, 100, n=0)
    exchange.place_order(1, order(1, qty=150))  # 15k with 50% margin on 10k equity: fine
    placed = exchange.place_order(1, order(2, qty=100))  # 25k gross needs 12.5k > 10k
    assert placed is not None and placed.status == Status.CANCELLED
    assert "MUST EXCEED THE INITIAL MARGIN" in events.of("error")[-1][2]


def test_cancel_and_duplicate_ids() -> None:
    exchange, events = make_exchange()
    exchange.place_order(1, order(1, kind="LMT", lmt=50))
    exchange.cancel_order(1, 1)
    assert events.log[-2:] == [
        ("status", (1, "Cancelled")),
        ("error", (1, 202, "Order Canceled - reason:")),
    ]
    exchange.cancel_order(1, 1)
    assert events.of("error")[-1][1] == 10148
    exchange.cancel_order(1, 99)
    assert events.of("error")[-1][1] == 10147
    exchange.place_order(1, order(1))
    assert events.of("error")[-1][1:] == (103, "Duplicate order id")
    assert exchange.next_valid_id(1) == 2 and exchange.next_valid_id(2) == 1


def test_modify_a_working_order() -> None:
    exchange, _ = make_exchange()
    placed = exchange.place_order(1, order(1, kind="LMT", lmt=90))
    exchange.place_order(1, order(1, kind="LMT", lmt=99, qty=50))
    bar(exchange, 100, 100, 98, 99, n=1)
    assert placed is not None and placed.status == Status.FILLED
    assert placed.filled_qty == 50 and placed.avg_fill_price == 99


def test_positions_cash_and_realized_pnl() -> None:
    exchange, _ = make_exchange()
    exchange.place_order(1, order(1, qty=100))
    bar(exchange, 100, 100, 100, 100, n=1)  # buy 100 @ 100, commission 1
    position = exchange.positions["AAPL"]
    assert position.quantity == 100 and position.avg_cost == pytest.approx(100.01)
    exchange.place_order(1, order(2, "SELL", qty=150))
    bar(exchange, 110, 110, 110, 110, n=2)  # sell 150 @ 110: close 100, open short 50
    record = exchange.executions[-1]
    commission = record.commission  # 150 x 0.005 = 0.75 -> minimum 1.00
    assert commission == 1.0
    assert record.realized_pnl == pytest.approx((110 - 100.01) * 100 - commission * 100 / 150)
    assert position.quantity == -50
    assert position.avg_cost == pytest.approx(110 - (commission * 50 / 150) / 50)
    assert exchange.cash == pytest.approx(1_000_000 - 10_001 + 16_500 - 1)
    snapshot = exchange.account_snapshot()
    assert snapshot.net_liquidation == pytest.approx(exchange.cash - 50 * 110)
    assert snapshot.gross_position_value == pytest.approx(5500)


def test_execution_filter() -> None:
    exchange, _ = make_exchange()
    exchange.place_order(1, order(1))
    exchange.place_order(2, order(1, "SELL", symbol="MSFT"))
    bar(exchange, 100, 100, 100, 100, n=1)
    bar(exchange, 50, 50, 50, 50, n=1, symbol="MSFT")
    everyone = exchange.find_executions(ExecutionFilterQuery(), None)
    assert len(everyone) == 2
    assert [r.symbol for r in exchange.find_executions(ExecutionFilterQuery(), [1])] == ["AAPL"]
    sells = exchange.find_executions(ExecutionFilterQuery(side="SELL"), None)
    assert [r.symbol for r in sells] == ["MSFT"]
    later = exchange.find_executions(ExecutionFilterQuery(time="20991231 00:00:00 UTC"), None)
    assert later == []


def test_journal_survives_a_restart(tmp_path: Path) -> None:
    exchange, _ = make_exchange(str(tmp_path))
    exchange.place_order(1, order(1, qty=100))
    bar(exchange, 100, 100, 100, 100, n=1)
    exchange.journal.close()
    restarted, _ = make_exchange(str(tmp_path))
    assert [r.exec_id for r in restarted.executions] == [r.exec_id for r in exchange.executions]
    assert restarted.positions["AAPL"].quantity == 100
    assert restarted.cash == pytest.approx(exchange.cash)
    assert restarted.next_valid_id(1) == 2
    fresh = restarted.place_order(1, order(2))
    assert fresh is not None and fresh.perm_id > exchange.executions[0].perm_id
    restarted.reset()
    assert restarted.executions == [] and make_exchange(str(tmp_path))[0].executions == []


def test_bad_bars_are_refused() -> None:
    exchange, _ = make_exchange()
    with pytest.raises(ValueError):
        exchange.on_bar("AAPL", T0, 100, 99, 98, 100, 1)  # high below open
    with pytest.raises(ValueError):
        exchange.on_bar("AAPL", T0, -1, 1, -1, 1, 1)
    exchange.on_bar("ZZZZ", T0, 1, 1, 1, 1, 1)
    assert "ZZZZ" in exchange.contracts  # a symbol seen on the feed becomes tradable
