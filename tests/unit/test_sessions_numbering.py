"""Daily bar sequence numbers are consecutive over trading days (no weekend/holiday "gaps")."""

from __future__ import annotations

import datetime as dt

import pytest
from marketdata.ib_bars import make_bar

from shared import sessions

pytestmark = pytest.mark.unit


def test_consecutive_sessions_get_consecutive_numbers_across_a_holiday_and_a_weekend() -> None:
    # 2024-07-04 (Thursday) was an NYSE holiday; 06-07 were a weekend.
    wed, fri, mon = dt.date(2024, 7, 3), dt.date(2024, 7, 5), dt.date(2024, 7, 8)
    assert sessions.session_number(fri) == sessions.session_number(wed) + 1
    assert sessions.session_number(mon) == sessions.session_number(fri) + 1


def test_numbers_keep_counting_weekdays_past_the_calendar() -> None:
    far = dt.date(2040, 1, 2)  # a Monday, beyond exchange_calendars' default range
    friday = far - dt.timedelta(days=3)
    assert sessions.session_number(far) == sessions.session_number(friday) + 1


def test_daily_ib_bars_carry_the_session_number_as_seq() -> None:
    seqs = []
    for day in (dt.date(2024, 7, 3), dt.date(2024, 7, 5), dt.date(2024, 7, 8)):
        close = sessions.session_close_ns(day)
        seqs.append(make_bar("AAPL", "1d", close, 10, 11, 9, 10.5, 100).seq)
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
