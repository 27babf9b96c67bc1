"""Repeated refusals: one WARNING line per reason per minute, with a count."""

from __future__ import annotations

import logging

import pytest
from execution.refusals import RefusalSummary

pytestmark = pytest.mark.unit


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    return [
        (r.fields["reason"], r.fields["count"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "orders_refused" and r.levelno == logging.WARNING
    ]


def test_121_refusals_a_minute_are_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    summary = RefusalSummary(logging.getLogger("test.refusals"))
    for i in range(121):
        summary.record("max_orders_per_minute 30 reached", now=i * 0.5)
    summary.record("symbol X is not in the paper config's symbols", now=60.0)
    assert lines(caplog) == [
        ("max_orders_per_minute 30 reached", 1),
        ("max_orders_per_minute 30 reached", 120),
        ("symbol X is not in the paper config's symbols", 1),
    ]
    caplog.clear()
    summary.flush(now=125.0)  # the rate reason's second minute ended with nothing new
    summary.flush(now=200.0)
    assert lines(caplog) == []
    summary.record("max_orders_per_minute 30 reached", now=201.0)  # news again: at once
    assert lines(caplog) == [("max_orders_per_minute 30 reached", 1)]


def test_the_watchdog_flush_logs_the_last_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    summary = RefusalSummary(logging.getLogger("test.refusals"))
    for t in (0.0, 1.0, 2.0):
        summary.record("no price for the symbol yet", now=t)
    summary.flush(now=30.0)
    assert lines(caplog) == [("no price for the symbol yet", 1)]
    summary.flush(now=61.0)
    assert lines(caplog)[-1] == ("no price for the symbol yet", 2)
