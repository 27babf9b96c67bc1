"""The execution service with the in-process simulated broker: sizing, idempotency, safety rules.

The bus is replaced by a recording publisher; everything else (journal, sim broker, risk) is real.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from pathlib import Path
from typing import Any

import msgspec
import pytest
from execution.config import ExecutionConfig, ExecutionSettings
from execution.order_journal import OrderJournal
from execution.risk import round_half_away
from execution.service import ExecutionService, order_ref_for
from execution.sim_broker import SimBroker

from shared.config import BusSettings
from shared.costs import CostModel
from shared.messages import Bar, Fill, Message, OrderEvent, Position, TargetPosition
from shared.paper_config import PaperTradingConfig
from tests.track_records import write_passing_track_record

pytestmark = pytest.mark.unit

NY = zoneinfo.ZoneInfo("America/New_York")
COSTS = CostModel()


def close_ns(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, 16, tzinfo=NY).timestamp() * 1e9)


MONDAY = dt.date(2024, 3, 4)


class RecordingPublisher:
    producer = "test"

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def publish(self, message: Message) -> Message:
        self.sent.append(message)
        return message


class FakeBus:
    def __init__(self) -> None:
        self.publisher = RecordingPublisher()
        self.settings = BusSettings()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Harness:
    def __init__(
        self,
        tmp: Path,
        broker: SimBroker | None = None,
        *,
        confirm_live: str = "",
        reports_dir: str = "evaluation_results",
        **paper: Any,
    ) -> None:
        paper.setdefault("symbols", ["AAPL", "MSFT"])
        paper.setdefault("max_position", 1000)
        self.paper = PaperTradingConfig(**paper)
        self.settings = ExecutionSettings(
            broker="sim",
            state_dir=str(tmp),
            warmup_bars=False,
            confirm_live=confirm_live,
            reports_dir=reports_dir,
        )
        self.config = ExecutionConfig(
            settings=self.settings, paper=self.paper, paper_path="test.json"
        )
        self.broker = broker or SimBroker(COSTS, 100_000.0, state_file=tmp / "sim.json")
        self.journal = OrderJournal(tmp / "journal.sqlite")
        self.bus = FakeBus()
        self.clock = Clock()
        self.svc = ExecutionService(
            self.config,
            self.bus,
            self.broker,
            self.journal,  # type: ignore[arg-type]
            wall_clock=self.clock,
        )
        self.bar_seq = 0

    async def start(self) -> Harness:
        await self.broker.connect()
        await self.svc.drain()
        return self

    async def bar(
        self, day: dt.date, o: float, h: float, lo: float, c: float, symbol: str = "AAPL"
    ) -> Bar:
        self.bar_seq += 1
        bar = Bar(
            symbol=symbol,
            timeframe="1d",
            bar_open_ts=close_ns(day) - 23_400 * 10**9,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=1e6,
            ts_event=close_ns(day),
            seq=self.bar_seq,
        )
        await self.svc.on_bar(bar)
        return bar

    async def signal(self, bar: Bar, target: float, bar_seq: int | None = None) -> None:
        await self.svc.on_signal(
            TargetPosition(
                symbol=bar.symbol,
                target_position=target,
                model_version="m1",
                bar_seq=bar.seq if bar_seq is None else bar_seq,
                bar_close_ts=bar.ts_event,
                bar_close=bar.close,
            )
        )
        await self.svc.drain()

    def sent(self, kind: type, **match: Any) -> list[Any]:
        return [
            m
            for m in self.bus.publisher.sent
            if isinstance(m, kind) and all(getattr(m, k) == v for k, v in match.items())
        ]

    def close(self) -> None:
        self.journal.close()


async def test_target_change_sends_the_right_order_and_fills_at_next_open(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    # ATR not warm yet: stop = 2% of 100 = 2 -> 1% of 100k / 2 = 500 shares full size
    await h.signal(b1, 0.5)
    ref = order_ref_for("rl", "AAPL", b1.seq)
    orders = h.sent(OrderEvent, order_ref=ref)
    assert [o.status for o in orders] == ["submitted", "acknowledged"]
    assert (orders[0].side, orders[0].quantity, orders[0].order_type) == ("BUY", 250.0, "MKT")
    assert not h.sent(Fill)  # nothing fills on the decision's own bar

    b2 = await h.bar(MONDAY + dt.timedelta(days=1), 101, 103, 100, 102)
    fills = h.sent(Fill)
    assert len(fills) == 1
    price = COSTS.fill_price(1, 101.0)
    assert fills[0].price == pytest.approx(price)
    assert fills[0].commission == pytest.approx(COSTS.commission(250, price))
    assert fills[0].exec_id == f"sim-{ref}" and fills[0].quantity == 250
    assert h.sent(Position, symbol="AAPL")[-1].quantity == 250
    assert h.sent(OrderEvent, order_ref=ref)[-1].status == "filled"

    # target -0.5 on bar 2: equity marked at 102 (~100 240), stop 2% of 102
    equity = h.broker.equity()
    assert equity == pytest.approx(100_000 + 250 * (102 - price) - fills[0].commission)
    target = round_half_away(-0.5 * math.floor(equity * 0.01 / (0.02 * 102)))
    assert target == -246
    await h.signal(b2, -0.5)
    sell = h.sent(OrderEvent, order_ref=order_ref_for("rl", "AAPL", b2.seq))[0]
    assert (sell.side, sell.quantity) == ("SELL", 250.0 - target)
    await h.bar(MONDAY + dt.timedelta(days=2), 100, 101, 99, 100)
    assert h.sent(Position, symbol="AAPL")[-1].quantity == target
    assert h.broker.positions()["AAPL"].quantity == target
    h.close()


async def test_same_target_again_sends_nothing(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    b2 = await h.bar(MONDAY + dt.timedelta(days=1), 100, 101, 99, 100)
    before = len(h.sent(OrderEvent))
    await h.signal(b2, 1.0)  # already at 500 shares (the target is not a delta)
    assert len(h.sent(OrderEvent)) == before
    h.close()


async def test_repeated_signal_never_sends_twice_even_after_restart(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    await h.signal(b1, 1.0)
    await h.signal(b1, -1.0)  # same bar, same reference: still not sent again
    assert len(h.sent(OrderEvent, status="submitted")) == 1
    assert h.svc.counters["duplicates"] == 2
    h.close()

    # a new process: same journal and broker state, replayed signal
    h2 = await Harness(tmp_path).start()
    await h2.svc.on_bar(b1)
    await h2.signal(b1, -1.0)
    assert not h2.sent(OrderEvent, status="submitted")
    assert h2.svc.counters["duplicates"] == 1
    assert len(h2.broker.known_order_refs()) == 1
    h2.close()


async def test_rejected_order_is_a_clear_error_not_a_cancel(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    h.broker.reject_next = "insufficient margin"
    await h.signal(b1, 1.0)
    events = h.sent(OrderEvent, order_ref=order_ref_for("rl", "AAPL", b1.seq))
    assert [e.status for e in events] == ["submitted", "rejected"]
    assert "insufficient margin" in events[-1].reason and "201" in events[-1].reason
    assert h.journal.get(events[0].order_ref).state == "rejected"  # type: ignore[union-attr]
    assert h.svc.counters["rejected"] == 1
    h.close()


async def test_kill_switch_flattens_blocks_and_survives_restart(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    b2 = await h.bar(MONDAY + dt.timedelta(days=1), 100, 101, 99, 100)
    assert h.broker.positions()["AAPL"].quantity == 500
    await h.signal(b2, 0.5, bar_seq=b2.seq)  # a working order to be cancelled by the kill
    assert len(h.broker.working_orders()) == 1

    result = await h.svc.commands.kill({})
    await h.svc.drain()
    assert result["killed"] and result["cancelled"] == 1
    assert result["orders"] == ["flat-AAPL-kill-1"]
    flat = h.sent(OrderEvent, order_ref="flat-AAPL-kill-1")[0]
    assert (flat.side, flat.quantity) == ("SELL", 500.0)
    assert h.sent(OrderEvent, order_ref=order_ref_for("rl", "AAPL", b2.seq))[-1].status == (
        "cancelled"
    )

    b3 = await h.bar(MONDAY + dt.timedelta(days=2), 100, 101, 99, 100)
    assert "AAPL" not in h.broker.positions()
    await h.signal(b3, 1.0)
    refused = h.sent(OrderEvent, status="skipped")
    assert refused and "kill switch" in refused[-1].reason
    h.close()

    h2 = await Harness(tmp_path).start()  # a restart does not re-arm
    h2.bar_seq = h.bar_seq
    b4 = await h2.bar(MONDAY + dt.timedelta(days=3), 100, 101, 99, 100)
    await h2.signal(b4, 1.0)
    assert h2.sent(OrderEvent, status="skipped") and not h2.sent(OrderEvent, status="submitted")
    await h2.svc.commands.rearm({})
    await h2.signal(b4, 1.0, bar_seq=b4.seq + 100)
    assert h2.sent(OrderEvent, status="submitted")
    h2.close()


async def test_daily_loss_limit_flattens_and_stops_for_the_day(tmp_path: Path) -> None:
    h = await Harness(tmp_path, max_daily_loss=1000.0).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)  # 500 shares
    tuesday = MONDAY + dt.timedelta(days=1)
    b2 = await h.bar(tuesday, 100, 100, 95, 96)  # filled at ~100, marked at 96: -2000
    assert h.svc.risk.halted_day == "2024-03-05"
    flats = [e for e in h.sent(OrderEvent, status="submitted") if e.order_ref.startswith("flat-")]
    assert len(flats) == 1 and flats[0].side == "SELL" and flats[0].quantity == 500
    await h.signal(b2, 1.0)
    assert "max daily loss" in h.sent(OrderEvent, status="skipped")[-1].reason
    b3 = await h.bar(tuesday + dt.timedelta(days=1), 96, 97, 95, 96)  # the flatten fills
    assert "AAPL" not in h.broker.positions()
    await h.signal(b3, 0.2)  # Wednesday: trading again
    assert h.sent(OrderEvent, order_ref=order_ref_for("rl", "AAPL", b3.seq))[0].status == (
        "submitted"
    )
    h.close()


async def test_outside_trading_hours_and_days_is_refused(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    saturday = await h.bar(dt.date(2024, 3, 9), 99, 101, 98, 100)
    await h.signal(saturday, 1.0)
    holiday = await h.bar(dt.date(2024, 7, 4), 99, 101, 98, 100)
    await h.signal(holiday, 1.0)
    skipped = h.sent(OrderEvent, status="skipped")
    assert "outside trading days" in skipped[0].reason
    assert "holiday" in skipped[1].reason
    assert not h.sent(OrderEvent, status="submitted")
    h.close()


async def test_evening_bar_is_outside_hours(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    late = close_ns(MONDAY) + 3 * 3600 * 10**9  # 19:00 New York
    await h.svc.on_signal(
        TargetPosition(
            symbol="AAPL",
            target_position=1.0,
            model_version="m",
            bar_seq=1,
            bar_close_ts=late,
            bar_close=100.0,
        )
    )
    assert "outside trading hours" in h.sent(OrderEvent, status="skipped")[0].reason
    h.close()


async def test_unknown_symbol_is_refused(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    bar = await h.bar(MONDAY, 99, 101, 98, 100, symbol="TSLA")
    await h.signal(bar, 1.0)
    assert "not in the paper config" in h.sent(OrderEvent, status="skipped")[0].reason
    h.close()


class LiveSimBroker(SimBroker):
    def is_paper(self) -> bool:
        return False


async def test_live_account_is_refused_unless_confirmed_twice(tmp_path: Path) -> None:
    h = await Harness(tmp_path / "a", LiveSimBroker(COSTS, 100_000.0)).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    assert "LIVE account" in h.sent(OrderEvent, status="skipped")[0].reason
    assert "LIVE" in h.svc.status_detail()["trading_blocked"]
    h.close()
    # allow_live alone is not enough
    h = await Harness(tmp_path / "b", LiveSimBroker(COSTS, 100_000.0), allow_live=True).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    assert h.sent(OrderEvent, status="skipped") and not h.sent(OrderEvent, status="submitted")
    h.close()
    # both keys, and no paper track record (make compare reports): still refused
    h = await Harness(
        tmp_path / "c",
        LiveSimBroker(COSTS, 100_000.0),
        allow_live=True,
        confirm_live="yes-i-mean-live",
        reports_dir=str(tmp_path / "no-reports"),
    ).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    assert "track record" in h.sent(OrderEvent, status="skipped")[0].reason
    h.close()
    write_passing_track_record(tmp_path / "reports")
    h = await Harness(
        tmp_path / "d",
        LiveSimBroker(COSTS, 100_000.0),
        allow_live=True,
        confirm_live="yes-i-mean-live",
        reports_dir=str(tmp_path / "reports"),
    ).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    assert h.sent(OrderEvent, status="submitted")
    h.close()


@pytest.mark.parametrize("flatten", [False, True])
async def test_dead_man_cancels_and_flattens_or_holds(tmp_path: Path, flatten: bool) -> None:
    h = await Harness(tmp_path, flatten_on_dead_man=flatten).start()
    h.svc.hb_seen["inference"] = h.clock.t
    h.svc.hb_seen["marketdata"] = h.clock.t
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    b2 = await h.bar(MONDAY + dt.timedelta(days=1), 100, 101, 99, 100)
    await h.signal(b2, 0.5)  # working
    h.clock.t += 5
    await h.svc.safety_actions.check_dead_man()
    assert not h.svc.risk.dead_man  # 5 s < 10 s
    h.svc.hb_seen["marketdata"] = h.clock.t
    h.clock.t += 6  # inference silent for 11 s
    await h.svc.safety_actions.check_dead_man()
    await h.svc.drain()
    assert "inference" in h.svc.risk.dead_man and "marketdata" not in h.svc.risk.dead_man
    assert h.sent(OrderEvent, order_ref=order_ref_for("rl", "AAPL", b2.seq))[-1].status == (
        "cancelled"
    )
    flats = [e for e in h.sent(OrderEvent, status="submitted") if e.order_ref.startswith("flat-")]
    assert len(flats) == (1 if flatten else 0)
    b3 = await h.bar(MONDAY + dt.timedelta(days=2), 100, 101, 99, 100)
    assert ("AAPL" in h.broker.positions()) is (not flatten)
    await h.signal(b3, 0.1)
    assert "dead-man" in h.sent(OrderEvent, status="skipped")[-1].reason
    h.svc.hb_seen["inference"] = h.clock.t
    await h.svc.safety_actions.check_dead_man()
    assert not h.svc.risk.dead_man
    await h.signal(b3, 0.1, bar_seq=b3.seq + 100)
    assert h.sent(OrderEvent, order_ref=order_ref_for("rl", "AAPL", b3.seq + 100))
    h.close()


async def test_reduce_only_command(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    b2 = await h.bar(MONDAY + dt.timedelta(days=1), 100, 101, 99, 100)
    assert (await h.svc.commands.reduce_only({"on": True})) == {"reduce_only": True}
    await h.signal(b2, -1.0)  # flip refused beyond flat
    sell = h.sent(OrderEvent, order_ref=order_ref_for("rl", "AAPL", b2.seq))[0]
    assert (sell.side, sell.quantity) == ("SELL", 500.0)
    with pytest.raises(ValueError):
        await h.svc.commands.reduce_only({"on": "yes"})
    h.close()


async def test_bracket_orders_protect_the_position(tmp_path: Path) -> None:
    h = await Harness(tmp_path, order_type="BRACKET", fallback_stop_pct=0.02).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    ref = order_ref_for("rl", "AAPL", b1.seq)
    parent = h.sent(OrderEvent, order_ref=ref)[0]
    assert parent.order_type == "BRACKET" and parent.limit_price == pytest.approx(100.05)
    await h.bar(MONDAY + dt.timedelta(days=1), 100, 100.5, 99.5, 100)  # parent fills
    assert h.broker.positions()["AAPL"].quantity == 500
    children = {w.order_ref for w in h.broker.working_orders()}
    assert children == {f"{ref}-tp", f"{ref}-sl"}
    await h.bar(MONDAY + dt.timedelta(days=2), 99, 99, 97, 97.5)  # through the stop at 98
    assert "AAPL" not in h.broker.positions()
    assert h.sent(OrderEvent, order_ref=f"{ref}-sl")[-1].status == "filled"
    assert h.sent(OrderEvent, order_ref=f"{ref}-tp")[-1].status == "cancelled"
    assert any(f.order_ref == f"{ref}-sl" for f in h.sent(Fill))
    h.close()


async def test_status_positions_orders_and_track_record(tmp_path: Path) -> None:
    h = await Harness(tmp_path).start()
    assert h.svc.status_detail()["ready"] is False  # bus loop not running in this test
    h.svc.bus_running = True
    assert h.svc.status_detail()["ready"] is True
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    await h.bar(MONDAY + dt.timedelta(days=1), 100, 102, 99, 101)
    await h.bar(MONDAY + dt.timedelta(days=2), 101, 103, 100, 102)
    positions = await h.svc.commands.positions_command({})
    assert positions["AAPL"]["quantity"] == 500
    orders = await h.svc.commands.orders_command({})
    assert orders["journal"][0]["state"] == "filled"
    record = h.svc.track_record()
    assert record["days"] == 3 and record["days_traded"] == 1
    assert record["pnl"] == pytest.approx(h.broker.equity() - 100_000.0, abs=0.01)
    status = await h.svc.commands.status({})
    assert status["fills"] == 1 and status["positions"] == {"AAPL": 500}
    h.close()


async def test_reservation_unknown_to_the_broker_after_restart_is_lost_not_resent(
    tmp_path: Path,
) -> None:
    from execution.broker import OrderRequest

    journal = OrderJournal(tmp_path / "journal.sqlite")
    # a process reserved rl-AAPL-1 and was killed before the order reached the broker
    journal.reserve(OrderRequest(order_ref="rl-AAPL-1", symbol="AAPL", side="BUY", quantity=5))
    journal.close()
    h = await Harness(tmp_path).start()
    assert h.journal.get("rl-AAPL-1").state == "lost"  # type: ignore[union-attr]
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    assert b1.seq == 1
    await h.signal(b1, 1.0)  # the same reference: never sent
    assert not h.sent(OrderEvent, status="submitted")
    await h.signal(b1, 1.0, bar_seq=2)  # the next decision moves the position
    assert h.sent(OrderEvent, status="submitted")
    h.close()


async def test_reused_bar_seq_for_another_bar_is_a_loud_collision_not_an_order(
    tmp_path: Path,
) -> None:
    h = await Harness(tmp_path).start()
    b1 = await h.bar(MONDAY, 99, 101, 98, 100)
    await h.signal(b1, 1.0)
    b2 = await h.bar(MONDAY + dt.timedelta(days=1), 100, 101, 99, 100)
    await h.signal(b2, -1.0, bar_seq=b1.seq)  # a restarted producer numbering from 1 again
    assert len(h.sent(OrderEvent, status="submitted")) == 1
    assert h.svc.counters["ref_collisions"] == 1 and h.svc.counters["duplicates"] == 0
    h.close()


class SnapshotClient:
    def __init__(self, bars: list[Bar]) -> None:
        self.bars = bars

    async def request(self, name: str, args: dict[str, Any], timeout_s: float) -> Any:
        assert name == "snapshot"
        if args["symbol"] != "AAPL":
            from shared.command_channel import CommandTimeout

            raise CommandTimeout("no such symbol here")
        return {"symbol": "AAPL", "bars": [msgspec.to_builtins(b) for b in self.bars]}

    def close(self) -> None:
        pass


async def test_atr_warm_up_from_the_marketdata_snapshot(tmp_path: Path) -> None:
    h = await Harness(tmp_path, atr_period=3).start()
    day = MONDAY
    bars = []
    for i in range(5):
        bars.append(
            Bar(
                symbol="AAPL",
                timeframe="1d",
                bar_open_ts=0,
                open=100,
                high=102 + i,
                low=98,
                close=100,
                volume=1,
                ts_event=close_ns(day),
                seq=i + 1,
            )
        )
        day += dt.timedelta(days=1)
    h.bus.command_client = lambda service: SnapshotClient(bars)  # type: ignore[attr-defined]
    await h.svc._warm_up()
    atr = h.svc.atr["AAPL"]
    assert atr.bars_seen == 5 and atr.value is not None
    await h.svc.on_bar(bars[-1])  # the snapshot's last bar arrives live too: not counted twice
    assert atr.bars_seen == 5
    h.close()


def test_execution_does_not_import_ray_or_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, execution.__main__, execution.ib_broker, execution.sim_broker, "
        "execution.bench; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'ray', 'torch'}); print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
