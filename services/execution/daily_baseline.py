"""The daily-loss baseline: which equity today's loss is measured from (one account truth).

The broker's account is the only source of equity. The baseline is kept per trading day (of the
clock in use: the bar's or the wall's) and per broker account, and survives restarts:

* same account, same day: the day's baseline is kept (a restart does not forgive a loss);
* same account, a new day: the baseline is the account's last equity seen before (the previous
  close), so an overnight loss counts on the day it shows;
* another account (a fresh simulator account, another IB login), or none recorded yet: the
  baseline is the broker's equity now. A saved figure of another account is never compared with
  this one (that compared 1,010,678 with a fresh 1,000,000 and halted at start).
"""

from __future__ import annotations

import math

import msgspec


class DailyBaseline(msgspec.Struct, frozen=True, kw_only=True):
    day: str  # trading day, ISO date
    account: str  # the broker's account key (a fresh simulator account has a new one)
    start_equity: float  # what today's loss is measured from
    last_equity: float  # the latest equity seen (tomorrow's start for the same account)


def next_baseline(
    previous: DailyBaseline | None, *, day: str, account: str, equity: float
) -> DailyBaseline:
    """The baseline after observing ``equity`` of ``account`` on ``day`` (see the module doc)."""
    if not math.isfinite(equity):
        raise ValueError(f"equity must be finite, got {equity}")
    if previous is None or previous.account != account:
        start = equity
    elif previous.day == day:
        start = previous.start_equity
    else:
        start = previous.last_equity
    return DailyBaseline(day=day, account=account, start_equity=start, last_equity=equity)


def decode_baseline(raw: object) -> DailyBaseline | None:
    """A stored baseline, or None when there is none; ValueError when it is malformed."""
    if raw is None:
        return None
    try:
        baseline = msgspec.convert(raw, DailyBaseline)
    except msgspec.ValidationError as exc:
        raise ValueError(f"daily baseline is malformed: {exc}") from None
    if not (math.isfinite(baseline.start_equity) and math.isfinite(baseline.last_equity)):
        raise ValueError("daily baseline holds a non-finite equity")
    return baseline
