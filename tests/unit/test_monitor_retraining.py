"""The monitor shows the trainer's retraining records (``monitor.retraining``): a crafted
``retrain.json`` (the shape ``trainer.retrain.RetrainLoop`` writes) rendered as the dashboard's
rows and served in ``/dashboard.json``; the trainer heartbeat when the file is not readable; the
page's table reads only fields the rows carry. And ``make retrain``'s follower
(``trainer.retrain_now``) prints each state and where the record is."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from monitor import dashboard
from monitor.http import build_app
from monitor.retraining import RetrainFile, panel
from trainer.retrain_now import follow

from shared.messages import Heartbeat
from tests.unit.test_monitor_alerts import T0, feed, make_service

pytestmark = pytest.mark.unit

GATE = {
    "gate_model_sharpe": 1.2345,
    "gate_buy_and_hold_sharpe": 0.9,
    "gate_ma_crossover_sharpe": 0.4,
    "gate_folds": 4.0,
    "gate_model_worst_sharpe": 0.1,
    "gate_passed": 1.0,
}
SCORES = [
    {"session": "2026-03-02", "bars": 6, "shadow_pct": 0.5, "live_pct": 0.25},
    {"session": "2026-03-03", "bars": 6, "shadow_pct": -0.125, "live_pct": 0.0},
]


def records() -> list[dict[str, Any]]:
    dropped_by_gate = {
        "id": "retrain-20260301-120000",
        "reason": "schedule",
        "started_at": "2026-03-01T12:00:00Z",
        "live_version": "model_a",
        "state": "dropped",
        "version": "model_b",
        "verdict": "rejected",
        "gate_reason": "validation sharpe does not beat buy_and_hold",
        "gate": {**GATE, "gate_model_sharpe": 0.2, "gate_passed": 0.0},
        "why": "the validation-fold gate rejected it",
        "steps": [{"state": "training", "at": "t0"}, {"state": "dropped", "at": "t1"}],
    }
    promoted = {
        "id": "retrain-20260302-120000",
        "reason": "command",
        "started_at": "2026-03-02T12:00:00Z",
        "live_version": "model_a",
        "state": "promoted",
        "version": "model_c",
        "verdict": "promoted",
        "gate_reason": "validation sharpe beats both",
        "gate": GATE,
        "shadow_version": "model_c",
        "sessions_needed": 2,
        "margin_pct": 0.1,
        "scores": SCORES,
        "decision": {
            "promote": True,
            "sessions": ["2026-03-02", "2026-03-03"],
            "shadow_pct": 0.375,
            "live_pct": 0.25,
            "excess_pct": 0.125,
            "margin_pct": 0.1,
        },
        "pushed": "model_c",
        "steps": [
            {"state": s, "at": f"t{k}"}
            for k, s in enumerate(["training", "candidate", "shadow", "promoting", "promoted"])
        ],
    }
    return [dropped_by_gate, promoted]


def test_a_crafted_record_renders_every_step_newest_first() -> None:
    out = panel(records(), {"every": "1d", "next_due": "2026-03-04T12:00:00Z"})
    assert out["source"] == "file" and out["schedule"]["every"] == "1d"
    promoted, dropped = out["rows"]
    assert promoted["id"] == "retrain-20260302-120000"
    assert promoted["candidate"] == "model_c" and promoted["live"] == "model_a"
    assert promoted["gate"] == {
        "verdict": "promoted",
        "reason": "validation sharpe beats both",
        "model": 1.2345,
        "buy_and_hold": 0.9,
        "ma_crossover": 0.4,
        "folds": 4.0,
    }
    assert promoted["sessions_done"] == 2 and promoted["sessions_needed"] == 2
    assert [s["shadow_pct"] for s in promoted["sessions"]] == [0.5, -0.125]
    assert [s["live_pct"] for s in promoted["sessions"]] == [0.25, 0.0]
    assert promoted["decision"]["excess_pct"] == 0.125 and promoted["outcome"] == "promoted"
    assert [s["state"] for s in promoted["steps"]][-2:] == ["promoting", "promoted"]
    assert dropped["outcome"] == "dropped" and dropped["gate"]["verdict"] == "rejected"
    assert dropped["gate"]["model"] == 0.2 and "gate rejected" in dropped["why"]
    assert dropped["sessions"] == [] and dropped["decision"] is None


def test_the_dashboard_json_carries_the_records_and_falls_back_to_the_heartbeat(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "retrain.json").write_text(json.dumps(records()))
    svc = make_service(tmp_path, model_dir=str(models))

    async def scenario() -> dict[str, Any]:
        async with TestClient(TestServer(build_app({}, svc))) as client:
            reply = await client.get("/dashboard.json")
            assert reply.status == 200
            body: dict[str, Any] = await reply.json()
            return body

    snap = asyncio.run(scenario())
    assert snap["retrain"]["source"] == "file"
    assert [r["state"] for r in snap["retrain"]["rows"]] == ["promoted", "dropped"]
    assert snap["retrain"]["rows"][0]["sessions"][1]["shadow_pct"] == -0.125
    svc.close()

    # no readable file (a container without the model volume): the trainer's heartbeat summary
    bare = make_service(tmp_path / "bare", model_dir=str(tmp_path / "nowhere"))
    empty = bare.dashboard()["retrain"]
    assert (empty["source"], empty["rows"]) == ("none", [])
    summary = {
        "every": "off",
        "next_due": None,
        "last": {
            "id": "retrain-x",
            "state": "shadow",
            "shadow_version": "model_d",
            "sessions_done": 3,
            "sessions_needed": 5,
            "decisions_seen": 40,
        },
    }
    hb = Heartbeat(service="trainer", ready=True, detail={"retrain": summary}, ts_event=T0)
    feed(bare, hb)
    shown = bare.dashboard()["retrain"]
    assert shown["source"] == "heartbeat"
    (row,) = shown["rows"]
    assert (row["id"], row["state"], row["candidate"]) == ("retrain-x", "shadow", "model_d")
    assert (row["sessions_done"], row["sessions_needed"]) == (3, 5)
    bare.close()


def test_the_records_file_is_reread_only_when_it_changes(tmp_path: Path) -> None:
    reader = RetrainFile(tmp_path)
    assert reader.read() is None
    path = tmp_path / "retrain.json"
    path.write_text(json.dumps(records()[:1]))
    assert [r["id"] for r in reader.read() or []] == ["retrain-20260301-120000"]
    path.write_text("{ half a write")
    os.utime(path, ns=(1, 1))
    assert [r["id"] for r in reader.read() or []] == ["retrain-20260301-120000"]  # last good
    path.write_text(json.dumps(records()))
    os.utime(path, ns=(2, 2))
    assert len(reader.read() or []) == 2


def test_the_page_reads_only_fields_the_rows_carry() -> None:
    assert 'id="retrain"' in dashboard.HTML and 'id="retrain-sessions"' in dashboard.HTML
    block = dashboard.JS[dashboard.JS.index("const rt = s.retrain") :]
    block = block[: block.index('table("fills"')]
    row = panel(records(), None)["rows"][0]
    used = set(re.findall(r"\br\.(\w+)", block))
    assert used and used <= set(row), used - set(row)
    gate = set(re.findall(r"r\.gate\.(\w+)", block))
    assert gate and gate <= set(row["gate"])
    session = set(re.findall(r"\bx\.(\w+)", block))
    assert session and session <= set(row["sessions"][0])


# ----------------------------------------------------------------------------- make retrain


def test_make_retrain_follows_the_record_and_says_where_it_is() -> None:
    states = iter(["training", "training", "candidate", "shadow"])
    calls: list[tuple[str, dict[str, Any]]] = []

    def caller(name: str, args: dict[str, Any]) -> Any:
        calls.append((name, args))
        if name == "retrain":
            return {"id": "retrain-1", "reason": "command"}
        last = {"id": "retrain-1", "state": next(states), "sessions_needed": 5}
        return {"retrain": {"last": last}, "model_dir": "/m", "output_dir": "/o"}

    lines: list[str] = []
    code = follow(caller, {"window": "30d"}, out=lines.append, sleep=lambda s: None)
    assert code == 0
    assert calls[0] == ("retrain", {"window": "30d"})
    shown = [line.split(": ")[1].split(";")[0] for line in lines if line.startswith("retrain-1")]
    assert shown == ["training", "candidate", "shadow"]  # each state once
    assert "record: /m/retrain.json" in "\n".join(lines)
    assert "/o/retrain/retrain-1.decisions.jsonl" in "\n".join(lines)


def test_make_retrain_times_out_without_stopping_the_service() -> None:
    now = [0.0]

    def caller(name: str, args: dict[str, Any]) -> Any:
        if name == "retrain":
            return {"id": "retrain-2"}
        return {"retrain": {"last": {"id": "retrain-2", "state": "training"}}}

    def sleep(seconds: float) -> None:
        now[0] += seconds

    lines: list[str] = []
    code = follow(
        caller, {}, timeout_s=10, poll_s=3, out=lines.append, clock=lambda: now[0], sleep=sleep
    )
    assert code == 3 and any("timeout" in line for line in lines)
