"""A study over several symbols (``--symbols``): one pooled policy per variant x seed, scored on
every symbol; each table number is the mean over the symbols and each symbol's numbers are kept.
Scoring is stubbed (hand-made numbers per symbol); no training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trainer.study as study_mod
from trainer.study import STRATEGIES, STUDIES, _score_symbols, main
from trainer.study_report import METRICS, markdown, table_rows

pytestmark = pytest.mark.unit

SYMBOLS = ["AAPL", "NVDA", "META"]


def _split(symbol: str, scale: float) -> dict[str, dict[str, float]]:
    k = SYMBOLS.index(symbol) + 1
    return {n: {m: scale * k + j for j, m in enumerate(METRICS)} for n in STRATEGIES}


def test_each_number_is_the_mean_over_the_symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_score(model: Any, cfg: Any, version: str, ledger: Path, bars: Any):
        assert cfg.symbols == [] and bars == f"bars of {cfg.symbol}"  # narrowed to one symbol
        seen.append(cfg.symbol)
        return _split(cfg.symbol, 1.0), _split(cfg.symbol, 10.0)

    monkeypatch.setattr(study_mod, "_score", fake_score)
    smoke = STUDIES["smoke"]
    base = {**smoke.base, "symbol": SYMBOLS[0], "symbols": SYMBOLS, "num_envs_per_env_runner": 6}
    cfg = smoke.train_config(smoke.variants[0], 0).replace(**base)
    bars = {s: f"bars of {s}" for s in SYMBOLS}
    validation, holdout, extra = _score_symbols(None, cfg, "v", Path("ledger"), bars)
    assert seen == SYMBOLS
    # symbol k scores k * scale + j: the mean over k = 1, 2, 3 is 2 * scale + j
    for j, m in enumerate(METRICS):
        assert validation["model"][m] == pytest.approx(2.0 + j)
        assert holdout["ma_crossover"][m] == pytest.approx(20.0 + j)
    assert extra["per_symbol"]["NVDA"]["holdout"] == _split("NVDA", 10.0)

    one = cfg.replace(symbol="AAPL", symbols=[])
    validation, holdout, extra = _score_symbols(None, one, "v", Path("ledger"), bars)
    assert validation == _split("AAPL", 1.0) and extra == {}


def test_the_cli_passes_the_symbols_and_the_table_names_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    got: dict[str, Any] = {}

    def fake_run(study: Any, output_dir: Any, *, seeds: Any = None, symbols: Any = None) -> Path:
        got.update(study=study.name, seeds=seeds, symbols=symbols)
        (tmp_path / "results.md").write_text("table\n")
        return tmp_path

    monkeypatch.setattr(study_mod, "run_study", fake_run)
    assert main(["--study", "smoke", "--symbols", "AAPL, NVDA", "--seeds", "0,1"]) == 0
    assert got == {"study": "smoke", "seeds": [0, 1], "symbols": ["AAPL", "NVDA"]}

    smoke = STUDIES["smoke"]
    wide = smoke.__class__(
        **{
            **{f: getattr(smoke, f) for f in smoke.__struct_fields__},
            "base": {**smoke.base, "symbols": SYMBOLS},
        }
    )
    from trainer.study import SeedScore

    split = _split("AAPL", 1.0)
    scores = [SeedScore(v.name, 0, v.name, split, split, "") for v in smoke.variants]
    text = markdown(wide, table_rows(wide, scores), looks=1, seconds=1.0)
    assert "Symbols ['AAPL', 'NVDA', 'META']" in text
