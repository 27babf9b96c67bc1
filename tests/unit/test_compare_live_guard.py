"""The live guard's track record: the last N sessions of the compare reports within the bound."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from execution.broker import BrokerFill, BrokerPosition, ConnectionChange, WorkingOrder
from execution.commands import track_record
from execution.config import EXAMPLE_PAPER_CONFIG, ExecutionConfig, ExecutionSettings
from execution.live_record import read_track_record
from execution.order_journal import OrderJournal
from execution.positions import PositionBook
from execution.reconcile import Reconciler
from execution.safety import SafetySwitches

from shared.config import ConfigError, from_env
from shared.paper_config import load_paper_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def sessions(first_day: int, n: int, deviation: float = 0.001, within: bool = True) -> list[dict]:
    return [
        {"session": f"2024-03-{first_day + i:02d}", "deviation": deviation, "within_bound": within}
        for i in range(n)
    ]


def write(root: Path, period: str, rows: list[dict], generated_ns: int) -> Path:
    folder = root / f"paper-vs-backtest-{period}"
    folder.mkdir(parents=True)
    path = folder / "report.json"
    path.write_text(json.dumps({"generated_ns": generated_ns, "sessions": rows, "verdict": {}}))
    return path


def test_no_report_refuses_and_says_what_to_run(tmp_path: Path) -> None:
    record = read_track_record(tmp_path / "none", 20, 0.005)
    assert (
        not record.ok and "no report found" in record.message and "make compare" in record.message
    )


def test_twenty_sessions_within_the_bound_allow(tmp_path: Path) -> None:
    path = write(tmp_path, "a", sessions(1, 20), 1)
    record = read_track_record(tmp_path, 20, 0.005)
    assert record.ok and record.message == "" and record.reports == (str(path),)
    assert record.sessions_within == 20


def test_too_few_sessions_name_the_report_and_the_shortfall(tmp_path: Path) -> None:
    path = write(tmp_path, "a", sessions(1, 19), 1)
    record = read_track_record(tmp_path, 20, 0.005)
    assert not record.ok and str(path) in record.message
    assert "1 more sessions needed" in record.message


def test_a_recent_session_outside_this_services_bound_refuses(tmp_path: Path) -> None:
    rows = sessions(1, 25)
    rows[22]["deviation"] = 0.02  # the report may have allowed it; this service's bound does not
    rows[3]["within_bound"] = False  # older than the last 20: does not count
    write(tmp_path, "a", rows, 1)
    record = read_track_record(tmp_path, 20, 0.005)
    assert not record.ok and record.sessions_within == 19
    assert "2024-03-23 (deviation 0.02)" in record.message
    assert read_track_record(tmp_path, 2, 0.005).ok  # the last two are fine


def test_a_decision_deviation_refuses_whatever_the_money(tmp_path: Path) -> None:
    rows = sessions(1, 20)
    rows[-1]["within_bound"] = False
    write(tmp_path, "a", rows, 1)
    assert not read_track_record(tmp_path, 20, 0.005).ok


def test_the_newest_report_wins_for_a_session_in_two_reports(tmp_path: Path) -> None:
    write(tmp_path, "old", sessions(1, 20, deviation=0.05), 1)
    write(tmp_path, "new", sessions(1, 20), 2)  # the same sessions, compared again
    assert read_track_record(tmp_path, 20, 0.005).ok
    (tmp_path / "paper-vs-backtest-broken").mkdir()
    (tmp_path / "paper-vs-backtest-broken" / "report.json").write_text("{not json")
    assert read_track_record(tmp_path, 20, 0.005).ok  # an unreadable report is skipped
    write(tmp_path, "newest", sessions(5, 1, deviation=0.5), 3)
    record = read_track_record(tmp_path, 20, 0.005)
    assert not record.ok and "unreadable" in record.message


class LiveBroker:
    name = "fake"
    account = "U999"

    def __init__(self, paper: bool) -> None:
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.paper = paper

    def is_paper(self) -> bool:
        return self.paper

    def positions(self) -> dict[str, BrokerPosition]:
        return {}

    async def recover_fills(self, since_ns: int) -> list[BrokerFill]:
        return []

    def known_order_refs(self) -> set[str]:
        return set()

    def working_orders(self) -> list[WorkingOrder]:
        return []


def config(reports: Path, **kw: Any) -> ExecutionConfig:
    settings = ExecutionSettings(reports_dir=str(reports), confirm_live="yes-i-mean-live", **kw)
    paper = load_paper_config(REPO / EXAMPLE_PAPER_CONFIG)
    return ExecutionConfig(settings, msgspec.structs.replace(paper, allow_live=True), "p.json")


async def guard(tmp: Path, cfg: ExecutionConfig, paper: bool) -> SafetySwitches:
    journal = OrderJournal(tmp / "journal.sqlite")
    safety = SafetySwitches(journal)
    rec = Reconciler(
        broker=LiveBroker(paper),  # type: ignore[arg-type, unused-ignore]
        journal=journal,
        book=PositionBook(),
        safety=safety,
        publish=lambda m: None,
        symbols=frozenset({"AAPL"}),
        counters=dict.fromkeys(("fills", "recovered_fills", "rejected", "reconnects"), 0),
        live_confirmed=cfg.live_confirmed,
        paper_path=cfg.paper_path,
        track_record=cfg.live_track_refusal,
    )
    await rec.handle(ConnectionChange(connected=True))
    return safety


async def test_a_confirmed_live_account_without_a_track_record_is_refused(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    path = write(reports, "a", sessions(1, 12), 1)
    cfg = config(reports)
    assert cfg.live_confirmed  # both keys are set: only the track record is missing
    safety = await guard(tmp_path, cfg, paper=False)
    assert "LIVE account" in safety.live_refused and str(path) in safety.live_refused
    assert "8 more sessions needed" in safety.live_refused
    assert safety.blocked("2024-04-01", 5000.0) == safety.live_refused  # no order goes out


async def test_a_track_record_completes_the_two_keys(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    write(reports, "a", sessions(1, 12), 1)
    safety = await guard(tmp_path, config(reports, live_track_sessions=12), paper=False)
    assert safety.live_refused == ""


async def test_the_track_record_never_replaces_the_keys_nor_touches_paper(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    write(reports, "a", sessions(1, 20), 1)
    paper_cfg = config(reports)
    (tmp_path / "paper").mkdir()
    assert (
        await guard(tmp_path / "paper", config(tmp_path / "none"), paper=True)
    ).live_refused == ""
    unconfirmed = ExecutionConfig(
        ExecutionSettings(reports_dir=str(reports)), paper_cfg.paper, paper_cfg.paper_path
    )
    safety = await guard(tmp_path, unconfirmed, paper=False)
    assert "EXECUTION_CONFIRM_LIVE" in safety.live_refused  # the record alone is not enough


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EXECUTION_LIVE_TRACK_SESSIONS", "0"),
        ("EXECUTION_LIVE_TRACK_BOUND", "nan"),
        ("EXECUTION_LIVE_TRACK_BOUND", "2"),
        ("EXECUTION_REPORTS_DIR", ""),
    ],
)
def test_bad_track_record_settings_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_env(ExecutionSettings, "EXECUTION_", {key: value})


def test_the_track_record_command_shows_what_the_live_guard_reads(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    path = write(reports, "a", sessions(1, 5), 1)
    journal = OrderJournal(tmp_path / "journal.sqlite")
    shown = track_record(journal, config(reports).live_track_record())["live_track_record"]
    assert shown["ok"] is False and shown["required_sessions"] == 20
    assert shown["sessions_within_bound"] == 5 and shown["reports"] == [str(path)]
    assert "15 more sessions needed" in shown["missing"]
    assert "live_track_record" not in track_record(journal)  # the journal-only form is unchanged
