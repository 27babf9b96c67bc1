"""The safety switches: one owner, persisted state that a restart reloads, verdicts not stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from execution.input_guard import StateFileError
from execution.order_journal import OrderJournal
from execution.safety import SafetySwitches

pytestmark = pytest.mark.unit


def test_operator_switches_and_halt_survive_a_restart(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "journal.sqlite")
    switches = SafetySwitches(journal)
    switches.kill()
    switches.set_reduce_only(True)
    switches.halt_day("2024-03-05")
    baseline = switches.observe_equity(day="2024-03-05", account="sim-1", equity=99_000.0)
    switches.dead_man = "no heartbeat from inference"
    switches.observe_account(paper=False, confirmed=False, refusal="live")
    journal.close()

    journal = OrderJournal(tmp_path / "journal.sqlite")
    again = SafetySwitches(journal)
    assert again.killed and again.reduce_only and again.halted_day == "2024-03-05"
    assert again.baseline == baseline
    # verdicts on evidence are observed again after a start, never reloaded stale
    assert again.dead_man == "" and again.live_refused == ""
    assert "kill switch" in again.blocked("2024-03-06", 1000.0)

    assert again.rearm(clear_daily_loss=True)
    again.set_reduce_only(False)
    journal.close()
    journal = OrderJournal(tmp_path / "journal.sqlite")
    third = SafetySwitches(journal, reduce_only=True)
    assert not third.killed and not third.reduce_only and third.halted_day == ""
    assert third.blocked("2024-03-05", 1000.0) == ""
    journal.close()


def test_reduce_only_defaults_to_the_config_until_an_operator_sets_it(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "journal.sqlite")
    assert SafetySwitches(journal, reduce_only=True).reduce_only
    assert not SafetySwitches(journal).reduce_only
    journal.close()


def test_rearm_keeps_the_daily_halt_unless_asked(tmp_path: Path) -> None:
    switches = SafetySwitches(OrderJournal(tmp_path / "journal.sqlite"))
    switches.kill()
    switches.halt_day("2024-03-05")
    assert not switches.rearm()
    assert not switches.killed and switches.halted_day == "2024-03-05"
    assert "max daily loss 500 hit on 2024-03-05" in switches.blocked("2024-03-05", 500.0)
    assert switches.blocked("2024-03-06", 500.0) == ""  # the halt is for that day only


def test_a_wrong_type_in_the_store_stops_the_start(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "journal.sqlite")
    journal.set_value("daily_baseline", {"day": 1})
    with pytest.raises(StateFileError, match="daily baseline"):
        SafetySwitches(journal)
    journal.set_value("daily_baseline", None)
    journal.set_value("killed", "no")
    with pytest.raises(StateFileError, match="killed"):
        SafetySwitches(journal)


def test_dead_man_trips_once_and_clears_when_peers_speak_again() -> None:
    switches = SafetySwitches()
    seen = {"inference": 0.0, "marketdata": 9.0}
    watched = ["inference", "marketdata", "monitor"]  # monitor never heard: not silent
    assert switches.observe_heartbeats(seen, watched, 10.0, 5.0) == (["inference"], "tripped")
    assert "inference" in switches.dead_man and "dead-man" in switches.blocked("d", 1.0)
    assert switches.observe_heartbeats(seen, watched, 11.0, 5.0) == (["inference"], "")
    seen["inference"] = 11.0
    assert switches.observe_heartbeats(seen, watched, 12.0, 5.0) == ([], "cleared")
    assert switches.dead_man == "" and switches.blocked("d", 1.0) == ""


def test_live_guard_blocks_first() -> None:
    switches = SafetySwitches()
    switches.observe_account(paper=False, confirmed=False, refusal="LIVE account")
    switches.kill()
    assert switches.blocked("d", 1.0) == "LIVE account"
    switches.observe_account(paper=False, confirmed=True, refusal="LIVE account")
    assert "kill switch" in switches.blocked("d", 1.0)
