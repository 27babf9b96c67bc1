"""Inference's receive batch (``inference/batching.py``): tests written against mutants that
survived its first mutmut run (scripts/mutate.py). Expected values come from the rules in the
module docs, never from the code under test: every stale bar is counted, a refused or failed
bar inside a batch is logged as bar by bar (its own topic, the features' own refusal text), and
an epoch change of one symbol leaves the other symbols of the batch in ONE ONNX call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import inference.batching as batching_module
import msgspec
import pytest
from marketdata.replay import SymbolSeries

from shared.features import FeaturePipeline
from shared.runtime import BusConnection
from tests.inference_harness import (
    InferenceHarness,
    baseline_root,
    inference_bus,
    packaged_series,
)

pytestmark = pytest.mark.unit

SYMBOLS = ("AAPL", "NVDA", "GOOG")
SNAPSHOT = 120  # bars per warm-up: past the pipeline's warm-up, cheap to replay


@pytest.fixture(scope="module")
def all_series() -> dict[str, SymbolSeries]:
    return {s: packaged_series(s) for s in SYMBOLS}


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


def harness(
    tmp_path: Path, bus: BusConnection, series: dict[str, SymbolSeries], **kw
) -> InferenceHarness:
    return InferenceHarness(
        baseline_root(tmp_path), bus, series, model_version="baseline", snapshot_bars=SNAPSHOT, **kw
    )


async def test_every_stale_bar_of_a_batch_is_counted(tmp_path, bus, all_series) -> None:
    h = harness(tmp_path, bus, all_series)
    await h.warm()
    first = [ser.bar(ser.first_live) for ser in all_series.values()]
    h.service.handle_batch(first)
    assert h.service.counters.stale_bars == 0 and len(h.signals()) == 3
    h.service.handle_batch(first)  # the same three bars again: each one stale
    assert h.service.counters.stale_bars == 3
    assert len(h.signals()) == 3  # nothing decided twice


async def test_a_failed_feature_pass_is_each_bars_own_handler_error(
    tmp_path, bus, all_series, caplog, monkeypatch
) -> None:
    h = harness(tmp_path, bus, all_series)
    await h.warm()

    def broken(features, bars):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected feature failure")

    monkeypatch.setattr(batching_module, "update_features", broken)
    h.service.handle_batch([ser.bar(ser.first_live) for ser in all_series.values()])
    assert h.service.handler_errors == 3 and h.signals() == []
    records = [r for r in caplog.records if r.getMessage() == "handler_failed"]
    topics = [r.fields["topic"] for r in records]  # type: ignore[attr-defined]
    assert topics == ["bar.AAPL", "bar.NVDA", "bar.GOOG"]  # the bars' own topics, in order


async def test_a_refused_bar_inside_a_batch_is_logged_with_the_features_refusal(
    tmp_path, bus, all_series, caplog
) -> None:
    h = harness(tmp_path, bus, all_series)
    await h.warm()
    aapl, goog = all_series["AAPL"], all_series["GOOG"]
    bad = msgspec.structs.replace(aapl.bar(aapl.first_live), close=-1.0, low=-1.0)
    with pytest.raises(ValueError) as refused:  # the reference: OnlineFeatures bar by bar
        FeaturePipeline().online().update(bad.open, bad.high, bad.low, bad.close, bad.volume)
    h.service.handle_batch([bad, goog.bar(goog.first_live)])
    (record,) = [r for r in caplog.records if r.getMessage() == "bar_refused"]
    fields = {"symbol": "AAPL", "seq": bad.seq, "error": str(refused.value)}
    assert record.fields == fields  # type: ignore[attr-defined]
    assert str(refused.value).startswith("invalid bar")
    assert [s.symbol for s in h.signals()] == ["GOOG"]


async def test_an_epoch_change_of_one_symbol_keeps_the_others_in_one_onnx_call(
    tmp_path, bus, all_series
) -> None:
    h = harness(tmp_path, bus, all_series, epoch=1)
    await h.warm()
    aapl, nvda, goog = (all_series[s] for s in SYMBOLS)
    old = [h.bar("AAPL", aapl.first_live), h.bar("GOOG", goog.first_live)]
    h.epoch = 2  # marketdata restarted: NVDA's next bar (and its new snapshot) are epoch 2
    h.service.handle_batch([old[0], h.bar("NVDA", nvda.first_live), old[1]])
    await h.settle()
    c = h.service.counters
    assert c.epoch_changes == 1
    assert (c.batched_calls, c.batched_bars) == (1, 2)  # AAPL and GOOG decided together
    assert [s.symbol for s in h.signals()][:2] == ["AAPL", "GOOG"]
