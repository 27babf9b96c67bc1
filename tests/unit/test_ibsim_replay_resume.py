"""A restarted simulator resumes its market where it stopped (IBSIM_STATE_DIR), not at the start."""

from __future__ import annotations

import asyncio
import json

import pytest
from ibsim.app import Simulator
from ibsim.config import load_settings

pytestmark = pytest.mark.unit


def _env(tmp_path) -> dict[str, str]:
    return {
        "IBSIM_PORT": "0",
        "IBSIM_CONTROL_PORT": "0",
        "IBSIM_STATE_DIR": str(tmp_path),
        "IBSIM_REPLAY_SYMBOLS": "AAPL,NVDA",
        "IBSIM_REPLAY_START": "2023-06-01",
        "IBSIM_REPLAY_END": "2023-06-15",
        "IBSIM_REPLAY_SPEED": "0",
    }


async def test_restart_resumes_the_replay_and_keeps_played_bars_as_history(tmp_path) -> None:
    settings = load_settings(_env(tmp_path))
    async with Simulator(settings) as sim:
        assert sim.replay is not None
        for _ in range(500):  # readiness: the as-fast-as-possible replay reached its end
            if sim.replay.finished:
                break
            await asyncio.sleep(0.01)
        steps = len(sim.replay.timeline)
        last = int(sim.replay.timeline[-1])
        assert sim.replay.finished and sim.replay.cursor == steps
    saved = json.loads((tmp_path / "replay-cursor.json").read_text())
    assert saved["cursor"] == steps
    async with Simulator(settings) as again:
        assert again.replay is not None
        assert again.replay.finished and again.replay.cursor == steps
        assert again.replay.now_ns() == last  # the market clock where it stopped
        latest = again.exchange.bars.latest("AAPL")
        assert latest is not None and latest.close_ts == last  # played bars are history now
    # part-way: resumes after the third step; another period ignores the saved cursor
    saved["cursor"] = 3
    (tmp_path / "replay-cursor.json").write_text(json.dumps(saved))
    async with Simulator(load_settings({**_env(tmp_path), "IBSIM_REPLAY_AUTOSTART": "false"})) as s:
        assert s.replay is not None and s.replay.cursor == 3
        assert s.replay.now_ns() == int(s.replay.timeline[2])
    other = {**_env(tmp_path), "IBSIM_REPLAY_START": "2023-06-05", "IBSIM_REPLAY_AUTOSTART": "0"}
    async with Simulator(load_settings(other)) as s:
        assert s.replay is not None and s.replay.cursor == 0
