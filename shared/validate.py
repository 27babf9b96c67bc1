"""One validation layer for everything that crosses a boundary (bus frames, commands, state files).

``msgspec`` already guarantees the *shape* of a decoded message; this module checks its *meaning*:
finite numbers, positive prices, a consistent OHLC, quantities > 0, targets in [-1, 1],
bounded strings, a symbol pattern and timestamps that are not in the far future.
``problem(message)`` returns the reason a message must be refused (a short, stable string that
is safe to count and log), or ``None`` when it may reach state. Nothing here raises on
hostile input.

``RefusalCounter`` counts refusals per reason and says when a reason should be logged again (once
per reason per minute), so a flood of bad frames cannot flood the log.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import isfinite
from typing import Any

from shared.messages import (
    Bar,
    Fill,
    Heartbeat,
    Message,
    ModelStatus,
    ModelUpdated,
    OrderEvent,
    PnL,
    Position,
    ShadowTarget,
    TargetPosition,
)

# Exchange tickers, IB local symbols and FX pairs: letters, digits and . - / _ (BRK.B, EUR.USD).
SYMBOL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,23}")
MAX_ID_LEN = 128  # producer, order_ref, exec_id, model version, account ...
MAX_TEXT_LEN = 1_024  # free text: reasons, paths
MAX_DETAIL_ITEMS = 256  # heartbeat detail / pnl positions
FUTURE_SLACK_NS = 24 * 3600 * 1_000_000_000  # clocks drift; a day ahead is already hostile
MIN_TS_NS = 0
MAX_PRICE = 1e9
MAX_QUANTITY = 1e12


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def valid_symbol(symbol: Any) -> bool:
    return isinstance(symbol, str) and SYMBOL_PATTERN.fullmatch(symbol) is not None


def _text(value: str, limit: int = MAX_ID_LEN) -> bool:
    return len(value) <= limit


def _ts_ok(ts_ns: int, now_ns: int) -> bool:
    return MIN_TS_NS <= ts_ns <= now_ns + FUTURE_SLACK_NS


def _envelope(message: Message, now_ns: int) -> str | None:
    if not _text(message.producer):
        return "producer_too_long"
    if message.seq < 0:
        return "negative_seq"
    if not _ts_ok(message.ts_event, now_ns):
        return "ts_event_out_of_range"
    if not _ts_ok(message.ts_publish, now_ns):
        return "ts_publish_out_of_range"
    return None


def _bar(bar: Bar, now_ns: int) -> str | None:
    """A bar's numbers of any type (``finite``: bools and non-numbers refused), then its other
    fields. ``_bar_problem`` has the float path every decoded bar takes."""
    o, h, lo, c, v = bar.open, bar.high, bar.low, bar.close, bar.volume
    if not all(finite(p) for p in (o, h, lo, c)) or not finite(v):
        return "non_finite"
    if min(o, h, lo, c) <= 0 or max(o, h, lo, c) > MAX_PRICE:
        return "price_out_of_range"
    if h < max(o, c) or lo > min(o, c):
        return "inconsistent_ohlc"
    if v < 0:
        return "negative_volume"
    return _bar_fields(bar, now_ns)


def _bar_fields(bar: Bar, now_ns: int) -> str | None:
    """A bar's checks after its numbers (both paths)."""
    if not _text(bar.timeframe, 16):
        return "timeframe_too_long"
    if bar.bar_open_ts > bar.ts_event or not _ts_ok(bar.bar_open_ts, now_ns):
        return "bar_open_after_close"
    if bar.epoch < 0:
        return "bad_epoch"
    return None


def _target(signal: TargetPosition, now_ns: int) -> str | None:
    if not finite(signal.target_position) or not finite(signal.bar_close):
        return "non_finite"
    if not -1.0 <= signal.target_position <= 1.0:
        return "target_out_of_range"
    if signal.bar_close <= 0 or signal.bar_close > MAX_PRICE:
        return "price_out_of_range"
    if not (_text(signal.model_version) and _text(signal.strategy, 64)):
        return "text_too_long"
    if signal.bar_seq < 0 or not _ts_ok(signal.bar_close_ts, now_ns):
        return "bar_reference_out_of_range"
    return None


def _order(order: OrderEvent, now_ns: int) -> str | None:
    if not finite(order.quantity) or (
        order.limit_price is not None and not finite(order.limit_price)
    ):
        return "non_finite"
    if order.quantity < 0 or order.quantity > MAX_QUANTITY:
        return "quantity_out_of_range"
    if order.limit_price is not None and order.limit_price <= 0:
        return "price_out_of_range"
    if not (
        _text(order.order_ref) and _text(order.broker_order_id) and _text(order.order_type, 16)
    ):
        return "text_too_long"
    if not _text(order.reason, MAX_TEXT_LEN):
        return "text_too_long"
    return None


def _fill(fill: Fill, now_ns: int) -> str | None:
    if not (finite(fill.quantity) and finite(fill.price) and finite(fill.commission)):
        return "non_finite"
    if fill.quantity <= 0 or fill.quantity > MAX_QUANTITY:
        return "quantity_out_of_range"
    if fill.price <= 0 or fill.price > MAX_PRICE:
        return "price_out_of_range"
    if fill.commission < 0:
        return "negative_commission"
    if not (fill.exec_id and _text(fill.exec_id) and _text(fill.order_ref) and _text(fill.account)):
        return "bad_id"
    return None


def _position(position: Position, now_ns: int) -> str | None:
    if not (finite(position.quantity) and finite(position.avg_cost)):
        return "non_finite"
    if abs(position.quantity) > MAX_QUANTITY or position.avg_cost < 0:
        return "quantity_out_of_range"
    if not _text(position.account):
        return "text_too_long"
    return None


def _pnl(pnl: PnL, now_ns: int) -> str | None:
    numbers = (pnl.realized, pnl.unrealized, pnl.fees, pnl.equity, *pnl.positions.values())
    if not all(finite(v) for v in numbers):
        return "non_finite"
    if len(pnl.positions) > MAX_DETAIL_ITEMS or not all(valid_symbol(s) for s in pnl.positions):
        return "bad_positions"
    if not _text(pnl.account):
        return "text_too_long"
    return None


def _heartbeat(hb: Heartbeat, now_ns: int) -> str | None:
    if not (_text(hb.service, 64) and len(hb.detail) <= MAX_DETAIL_ITEMS):
        return "text_too_long"
    return None


def _model_updated(update: ModelUpdated, now_ns: int) -> str | None:
    if not (_text(update.version) and _text(update.path, MAX_TEXT_LEN)):
        return "text_too_long"
    if not (_text(update.onnx_sha256, 64) and _text(update.nonce) and _text(update.mac)):
        return "text_too_long"
    return None


def _model_status(status: ModelStatus, now_ns: int) -> str | None:
    texts = (status.instance, status.serving_version, status.requested_version)
    if not all(_text(t) for t in texts) or not _text(status.reason, MAX_TEXT_LEN):
        return "text_too_long"
    return None


_CHECKS: Mapping[type[Message], Callable[[Any, int], str | None]] = {
    Bar: _bar,
    TargetPosition: _target,
    ShadowTarget: _target,
    OrderEvent: _order,
    Fill: _fill,
    Position: _position,
    PnL: _pnl,
    Heartbeat: _heartbeat,
    ModelUpdated: _model_updated,
    ModelStatus: _model_status,
}


def problem(message: Message, now_ns: int | None = None) -> str | None:
    """Why ``message`` must not reach state, or None when it is acceptable."""
    now = time.time_ns() if now_ns is None else now_ns
    if type(message) is Bar:
        return _bar_problem(message, now)
    return _general_problem(message, now)


def _bar_problem(bar: Bar, now_ns: int) -> str | None:
    """``_general_problem`` for a Bar, the same checks in the same order: every bar on the bus
    passes here (measured 1.3 -> 0.9 us a bar; the verdicts are tested equal). A decoded Bar's
    numbers are always floats (msgspec turns ints into floats and refuses bools), so
    ``math.isfinite`` and plain comparisons decide; a Bar built in-process with other types
    takes ``_bar``'s general check."""
    if not valid_symbol(bar.symbol):
        return "bad_symbol"
    reason = _envelope(bar, now_ns)
    if reason is not None:
        return reason
    o, h, lo, c, v = bar.open, bar.high, bar.low, bar.close, bar.volume
    if not type(o) is type(h) is type(lo) is type(c) is type(v) is float:
        return _bar(bar, now_ns)
    if not (isfinite(o) and isfinite(h) and isfinite(lo) and isfinite(c) and isfinite(v)):
        return "non_finite"
    if o <= 0 or h <= 0 or lo <= 0 or c <= 0:
        return "price_out_of_range"
    if o > MAX_PRICE or h > MAX_PRICE or lo > MAX_PRICE or c > MAX_PRICE:
        return "price_out_of_range"
    if h < o or h < c or lo > o or lo > c:
        return "inconsistent_ohlc"
    if v < 0:
        return "negative_volume"
    return _bar_fields(bar, now_ns)


def _general_problem(message: Message, now: int) -> str | None:
    symbol = getattr(message, "symbol", None)
    if symbol is not None and not valid_symbol(symbol):
        return "bad_symbol"
    reason = _envelope(message, now)
    if reason is not None:
        return reason
    check = _CHECKS.get(type(message))
    return None if check is None else check(message, now)


def finite_mapping(values: Mapping[str, Any]) -> bool:
    """True when every number in a (nested) mapping is finite: the rule for what we persist."""
    return all(_finite_tree(v) for v in values.values())


def _finite_tree(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite_tree(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_tree(v) for v in value)
    return True


@dataclass
class RefusalCounter:
    """Counts refusals per reason; ``should_log`` is True at most once per reason per interval."""

    interval_s: float = 60.0
    counts: dict[str, int] = field(default_factory=dict)
    _last_logged: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def add(self, reason: str) -> bool:
        """Count one refusal; True when the caller should log it now."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self.clock()
        last = self._last_logged.get(reason)
        if last is None or now - last >= self.interval_s:
            self._last_logged[reason] = now
            return True
        return False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)
