"""``Bar.epoch``: marketdata restarted or reconnected. The symbol's continuity state is dropped and
re-warmed from the snapshot, every bar after the last signalled one gets exactly one signal
(backfilled ones included), the change is logged and counted in ``status``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.runtime import BusConnection
from tests.inference_harness import InferenceHarness, baseline_root, inference_bus, packaged_series

pytestmark = pytest.mark.unit


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    with inference_bus(tmp_path) as connection:
        yield connection


async def test_an_epoch_change_rewarms_and_signals_each_later_bar_once(
    tmp_path: Path, bus: BusConnection
) -> None:
    series = packaged_series("AAPL")
    # marketdata has stored the bars before end["AAPL"] so far, in epoch 1
    h = InferenceHarness(baseline_root(tmp_path), bus, series, epoch=1)
    service = h.service
    await h.warm("AAPL")
    start = series.first_live
    for i in range(start, start + 5):
        h.end["AAPL"] = i + 1
        service.handle_batch([h.bar("AAPL", i)])
    assert len(h.published) == 5 and service.status_detail()["epoch_changes"] == 0
    # marketdata restarts: epoch 2; it stored bars start+5..+7 (backfill) while away and
    # publishes them before the first live bar of the new epoch
    h.end["AAPL"], h.epoch = start + 9, 2
    service.handle_batch([h.bar("AAPL", start + 5, backfill=True)])
    assert service.counters.epoch_changes == 1
    await next(iter(service._warm_tasks))  # the re-warm from the new epoch's snapshot
    assert h.snapshot_epochs == [1, 2]
    for i in (start + 6, start + 7, start + 8):  # already in the snapshot: no second signal
        service.handle_batch([h.bar("AAPL", i, backfill=i < start + 8)])
    service.handle_batch([h.bar("AAPL", start + 9)])
    closes = [s.bar_close_ts for s in h.signals()]
    assert closes == [series.bar(i).ts_event for i in range(start, start + 10)]  # each once
    status = service.status_detail()
    assert status["epoch_changes"] == 1 and status["counters"]["caught_up_bars"] == 4
    assert status["symbols"]["AAPL"]["epoch"] == 2 and status["symbols"]["AAPL"]["seq_gaps"] == 0
