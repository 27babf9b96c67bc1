"""Online features of many symbols held as arrays: one numpy pass updates K symbols' rows.

``OnlineFeatures.update`` costs ~10 us of Python per bar; a receive batch of 100 symbols (one
close time) pays it 100 times. A ``FeatureBank`` keeps the same online state (the ring of
closes, the EWMs, ATR, the six rolling windows) of every symbol as rows of arrays and advances
the rows of a whole batch with element-wise numpy operations.

Bit-identical to ``OnlineFeatures.update`` for every symbol (no train/serve skew), because every
step is the same IEEE operation in the same order, element by element:

* +, -, *, /, abs, max, ``sqrt`` and comparisons are exactly rounded in numpy as in Python, and
  each expression keeps ``OnlineFeatures``' evaluation order (``(b*y + a*x) / den``, ...);
* ``log`` is NOT: numpy's SIMD log differs from ``math.log`` in the last bit for ~4 % of inputs
  on this machine (AVX-512), so the five logs per row go through ``math.log`` on a list;
* the exact re-sums of the rolling windows use ``math.fsum`` per window (exactly rounded, so
  order-free), only for the rows due (every n pushes, or a stale anchor), and the ATR seed is
  ``np.mean`` of the same contiguous n values, per symbol, once in its life;
* the EWMs' observation counts equal ``bars_seen`` (every accepted bar pushes each once; MACD's
  signal from the ``macd_slow``-th bar on), so they are derived, not stored.

A symbol's ``BankedFeatures`` starts as a plain ``OnlineFeatures`` (a warm-up replay or the
one-bar path updates it one bar at a time, as before) and moves into the bank at its first
batched update of at least ``ADOPT_MIN`` symbols; from then on a lone bar is a batch of one.
A config with the optional regime block is not vectorised: its symbols stay ``OnlineFeatures``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import msgspec
import numpy as np

from shared.features import (
    _ZERO_STD_REL,
    FeatureConfig,
    OnlineFeatures,
    _Ewm,
    _Rolling,
    feature_names,
    warmup_bars,
)

ADOPT_MIN = 4  # a smaller batch updates its not-yet-banked symbols one by one (cheaper)
OHLCV = tuple[float, float, float, float, float]


def _logs(x: np.ndarray) -> np.ndarray:
    """``math.log`` element by element (numpy's log is not bit-identical to libm's)."""
    return np.array([math.log(v) for v in x.tolist()], dtype=np.float64)


def _ewm(value: np.ndarray, x: np.ndarray, first: np.ndarray, ewm: _Ewm) -> np.ndarray:
    """``_Ewm.push`` on many rows: seeded with x, unchanged when x equals it."""
    with np.errstate(invalid="ignore"):
        moved = (ewm._b * value + ewm._a * x) / ewm._den
    return np.where(first, x, np.where(value != x, moved, value))


class _WindowBank:
    """``_Rolling`` (mean and population std over n values, anchored sums) for every slot."""

    def __init__(self, n: int, capacity: int) -> None:
        self.n = n
        self.buf = np.zeros((capacity, n))
        self.pos = np.zeros(capacity, dtype=np.int64)
        self.count = np.zeros(capacity, dtype=np.int64)
        self.since = np.zeros(capacity, dtype=np.int64)
        self.anchor = np.zeros(capacity)
        self.s = np.zeros(capacity)
        self.s2 = np.zeros(capacity)

    def grow(self, capacity: int) -> None:
        for name in ("buf", "pos", "count", "since", "anchor", "s", "s2"):
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def load(self, slot: int, window: _Rolling) -> None:
        self.buf[slot] = window._buf
        self.pos[slot] = window._i
        self.count[slot] = window._count
        self.since[slot] = window._since
        self.anchor[slot] = window._anchor
        self.s[slot] = window._s
        self.s2[slot] = window._s2

    def push(self, slots: np.ndarray, x: np.ndarray) -> None:
        n = self.n
        count = self.count[slots]
        anchor = np.where(count == 0, x, self.anchor[slots])
        pos = self.pos[slots]
        full = count >= n
        d_old = self.buf[slots, pos] - anchor
        s = self.s[slots]
        s2 = self.s2[slots]
        s = np.where(full, s - d_old, s)
        s2 = np.where(full, s2 - d_old * d_old, s2)
        self.buf[slots, pos] = x
        d = x - anchor
        s = s + d
        s2 = s2 + d * d
        count = np.where(full, count, count + 1)
        pos += 1
        pos[pos == n] = 0
        since = self.since[slots] + 1
        self.anchor[slots] = anchor
        self.s[slots] = s
        self.s2[slots] = s2
        self.count[slots] = count
        self.pos[slots] = pos
        self.since[slots] = since
        for slot in slots[(since >= n) & (count >= n)].tolist():
            self.resum(slot)

    def resum(self, slot: int) -> None:
        values = self.buf[slot].tolist()
        anchor = math.fsum(values) / self.n
        devs = [v - anchor for v in values]
        self.anchor[slot] = anchor
        self.s[slot] = math.fsum(devs)
        self.s2[slot] = math.fsum(d * d for d in devs)
        self.since[slot] = 0

    def mean(self, slots: np.ndarray) -> np.ndarray:
        return self.anchor[slots] + self.s[slots] / self.n

    def std(self, slots: np.ndarray) -> np.ndarray:
        n = self.n
        m = self.s[slots] / n
        var = self.s2[slots] / n - m * m
        stale = (m * m > 16.0 * var) & (np.abs(m) > 1e-12 * np.abs(self.anchor[slots]))
        stale &= self.count[slots] >= n
        for j in np.flatnonzero(stale).tolist():  # ``_Rolling.std``'s re-anchoring, per row
            slot = int(slots[j])
            self.resum(slot)
            m[j] = self.s[slot] / n
            var[j] = self.s2[slot] / n - m[j] * m[j]
        return np.sqrt(np.where(var > 0.0, var, 0.0))


class BankedFeatures:
    """One symbol's online features with ``OnlineFeatures``' interface: its own
    ``OnlineFeatures`` until the bank adopts it, then a row (``slot``) of the bank."""

    __slots__ = ("__weakref__", "bank", "online", "slot")

    def __init__(self, bank: FeatureBank) -> None:
        self.bank = bank
        self.online: OnlineFeatures | None = OnlineFeatures(bank.config)
        self.slot = -1

    @property
    def config(self) -> FeatureConfig:
        return self.bank.config

    @property
    def names(self) -> list[str]:
        return self.bank.names

    @property
    def warmup_bars(self) -> int:
        return self.bank.warmup_bars

    @property
    def bars_seen(self) -> int:
        if self.online is not None:
            return self.online.bars_seen
        return int(self.bank.seen[self.slot])

    @property
    def ready(self) -> bool:
        return self.bars_seen >= self.bank.warmup_bars

    @property
    def atr(self) -> float | None:
        if self.online is not None:
            return self.online.atr
        value = float(self.bank.atr[self.slot])
        return None if math.isnan(value) else value

    def update(
        self, open: float, high: float, low: float, close: float, volume: float
    ) -> np.ndarray | None:
        """``OnlineFeatures.update``: the row, None while warming, ValueError for a bad bar."""
        if self.online is not None:
            return self.online.update(open, high, low, close, volume)
        rows, errors = self.bank.update_batch([self], [(open, high, low, close, volume)])
        if errors[0] is not None:
            raise ValueError(errors[0])
        return rows[0]


class FeatureBank:
    """The online feature state of many symbols of one ``FeatureConfig`` (see the module doc)."""

    def __init__(self, config: FeatureConfig, capacity: int = 64) -> None:
        c = config
        self.config = c
        self.names = feature_names(c)
        self.warmup_bars = warmup_bars(c)
        self.vectorised = c.regime is None
        # its EWM constants are the ones every row uses (the regime block is not vectorised)
        self._template = OnlineFeatures(msgspec.structs.replace(c, regime=None))
        self._horizons = np.asarray(c.return_horizons, dtype=np.int64)
        self._hist_len = max(c.return_horizons) + 1
        self._free: list[int] = []
        self._used = 0
        self._capacity = capacity
        self.seen = np.zeros(capacity, dtype=np.int64)
        self.closes = np.full((capacity, self._hist_len), math.nan)
        self.ci = np.zeros(capacity, dtype=np.int64)
        self.prev = np.full(capacity, math.nan)
        self.rsi_up = np.full(capacity, math.nan)
        self.rsi_dn = np.full(capacity, math.nan)
        self.ema_fast = np.full(capacity, math.nan)
        self.ema_slow = np.full(capacity, math.nan)
        self.ema_sig = np.full(capacity, math.nan)
        self.trs = np.zeros((capacity, c.atr_window))
        self.atr = np.full(capacity, math.nan)
        self.bb = _WindowBank(c.bb_window, capacity)
        self.vol = _WindowBank(c.volume_window, capacity)
        self.rv_s = _WindowBank(c.vol_short, capacity)
        self.rv_l = _WindowBank(c.vol_long, capacity)
        self.sma_f = _WindowBank(c.trend_fast, capacity)
        self.sma_s = _WindowBank(c.trend_slow, capacity)

    def online(self) -> BankedFeatures:
        return BankedFeatures(self)

    # ------------------------------------------------------------------ slots
    def _windows(self) -> tuple[_WindowBank, ...]:
        return (self.bb, self.vol, self.rv_s, self.rv_l, self.sma_f, self.sma_s)

    def _grow(self) -> None:
        capacity = self._capacity * 2
        for name in ("seen", "closes", "ci", "prev", "rsi_up", "rsi_dn", "ema_fast", "ema_slow",
                     "ema_sig", "trs", "atr"):  # fmt: skip
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        for window in self._windows():
            window.grow(capacity)
        self._capacity = capacity

    def _release(self, slot: int) -> None:
        self._free.append(slot)

    def _adopt(self, handle: BankedFeatures) -> None:
        """Move a symbol's ``OnlineFeatures`` state into a free row (its slot until it dies)."""
        f = handle.online
        assert f is not None and f.config == self.config
        if self._free:
            slot = self._free.pop()
        else:
            if self._used == self._capacity:
                self._grow()
            slot = self._used
            self._used += 1
        self.seen[slot] = f.bars_seen
        self.closes[slot] = f._closes
        self.ci[slot] = f._ci
        self.prev[slot] = f._prev_close
        self.rsi_up[slot] = f._rsi_up.value
        self.rsi_dn[slot] = f._rsi_dn.value
        self.ema_fast[slot] = f._ema_fast.value
        self.ema_slow[slot] = f._ema_slow.value
        self.ema_sig[slot] = f._ema_sig.value
        self.trs[slot, : len(f._tr_sum)] = f._tr_sum
        self.atr[slot] = f._atr
        for window, rolling in zip(
            self._windows(), (f._bb, f._vol, f._rv_s, f._rv_l, f._sma_f, f._sma_s), strict=True
        ):
            window.load(slot, rolling)
        handle.online = None
        handle.slot = slot
        weakref.finalize(handle, self._release, slot)

    # ------------------------------------------------------------------ updates
    def update_batch(
        self, handles: Sequence[BankedFeatures], bars: Sequence[OHLCV]
    ) -> tuple[list[np.ndarray | None], list[str | None]]:
        """One bar per handle (distinct symbols of this bank): each symbol's feature row (None
        while warming) and, for a bar ``OnlineFeatures`` refuses, its ValueError message (the
        symbol's state untouched), exactly as calling ``update`` symbol by symbol."""
        k = len(handles)
        rows: list[np.ndarray | None] = [None] * k
        errors: list[str | None] = [None] * k
        if len({id(h) for h in handles}) != k:  # a symbol twice: one bar after the other
            for i, (handle, bar) in enumerate(zip(handles, bars, strict=True)):
                (rows[i],), (errors[i],) = self.update_batch([handle], [bar])
            return rows, errors
        adopt = self.vectorised and k >= ADOPT_MIN
        banked: list[int] = []
        for i, handle in enumerate(handles):
            if handle.bank is not self:
                raise ValueError("a handle of another bank")
            if handle.online is not None and adopt:
                self._adopt(handle)
            online = handle.online
            if online is None:
                banked.append(i)
                continue
            try:
                rows[i] = online.update(*bars[i])
            except ValueError as exc:
                errors[i] = str(exc)
        if banked:
            self._update_banked(
                [handles[i] for i in banked], [bars[i] for i in banked], banked, rows, errors
            )
        return rows, errors

    def _update_banked(
        self,
        handles: list[BankedFeatures],
        bars: list[OHLCV],
        where: list[int],
        rows: list[np.ndarray | None],
        errors: list[str | None],
    ) -> None:
        x = np.array(bars, dtype=np.float64).reshape(len(bars), 5)
        high, low, close, volume = x[:, 1], x[:, 2], x[:, 3], x[:, 4]
        with np.errstate(invalid="ignore"):  # NaN fails every comparison: refused
            ok = (low > 0.0) & (low <= high) & (high < math.inf) & (close > 0.0)
            ok &= (close < math.inf) & (volume >= 0.0) & (volume < math.inf)
        slots = np.array([h.slot for h in handles], dtype=np.int64)
        if not ok.all():
            for j in np.flatnonzero(~ok).tolist():
                _, h, lo, c, v = (float(value) for value in bars[j])
                errors[where[j]] = f"invalid bar high={h!r} low={lo!r} close={c!r} volume={v!r}"
            keep = np.flatnonzero(ok)
            slots = slots[keep]
            high, low, close, volume = high[keep], low[keep], close[keep], volume[keep]
            where = [where[j] for j in keep.tolist()]
        if len(slots) == 0:
            return
        done, block = self._advance(slots, high, low, close, volume)
        for j, row in zip(np.flatnonzero(done).tolist(), block, strict=True):
            rows[where[j]] = row

    def _advance(
        self,
        slots: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``OnlineFeatures.update`` on valid bars of distinct slots: the mask of rows past the
        warm-up and their (m, k) feature block."""
        c = self.config
        t = self._template
        seen = self.seen[slots]
        first = seen == 0
        prev = self.prev[slots]
        hl = self._hist_len
        ci = self.ci[slots]
        self.closes[slots, ci] = close
        self.ci[slots] = np.where(ci + 1 < hl, ci + 1, 0)

        # RSI: the first bar's diff is NaN, which gives 0.0 up and down (as ta's fillna)
        diff = close - prev
        up = np.where(diff > 0, diff, 0.0)
        dn = np.where(diff < 0, -diff, 0.0)
        self.rsi_up[slots] = _ewm(self.rsi_up[slots], up, first, t._rsi_up)
        self.rsi_dn[slots] = _ewm(self.rsi_dn[slots], dn, first, t._rsi_dn)

        # MACD: the signal EWM is pushed from the macd_slow-th bar on
        fast = self.ema_fast[slots] = _ewm(self.ema_fast[slots], close, first, t._ema_fast)
        slow = self.ema_slow[slots] = _ewm(self.ema_slow[slots], close, first, t._ema_slow)
        after = seen + 1
        macd_on = after >= c.macd_slow
        macd = np.where(macd_on, fast - slow, math.nan)
        old_sig = self.ema_sig[slots]
        sig = np.where(macd_on, _ewm(old_sig, macd, after == c.macd_slow, t._ema_sig), old_sig)
        self.ema_sig[slots] = sig

        # ATR: the first true range is high - low; seeded with the mean of the first n
        span = high - low
        tr = np.maximum(np.maximum(span, np.abs(high - prev)), np.abs(low - prev))
        tr = np.where(first, span, tr)
        n = c.atr_window
        seeding = seen < n
        atr = self.atr[slots]
        self.atr[slots] = np.where(seeding, atr, (atr * (n - 1) + tr) / float(n))
        if seeding.any():
            self.trs[slots[seeding], seen[seeding]] = tr[seeding]
            for slot in slots[seen == n - 1].tolist():
                self.atr[slot] = float(np.mean(self.trs[slot]))

        # rolling windows (log returns from the second bar on)
        self.bb.push(slots, close)
        self.vol.push(slots, volume)
        later = ~first
        if later.any():
            logret = _logs(close[later] / prev[later])
            self.rv_s.push(slots[later], logret)
            self.rv_l.push(slots[later], logret)
        self.sma_f.push(slots, close)
        self.sma_s.push(slots, close)
        self.prev[slots] = close
        self.seen[slots] = after

        done = after >= self.warmup_bars
        if not done.any():
            return done, np.empty((0, len(self.names)))
        return done, self._rows(slots[done], ci[done], close[done], volume[done])

    def _rows(
        self, slots: np.ndarray, last: np.ndarray, close: np.ndarray, volume: np.ndarray
    ) -> np.ndarray:
        """The feature rows of warm slots just advanced (``last``: where their close went)."""
        t = self._template
        hl = self._hist_len
        ring = self.closes[slots]
        at = np.arange(len(slots))
        cols: list[np.ndarray] = []
        for h in self._horizons.tolist():
            cols.append(_logs(close / ring[at, (last - h) % hl]))

        ema_up = self.rsi_up[slots]
        ema_dn = self.rsi_dn[slots]
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = 100.0 - (100.0 / (1.0 + ema_up / ema_dn))
        cols.append(np.where(ema_dn == 0, 100.0, rsi))

        macd = self.ema_fast[slots] - self.ema_slow[slots]
        cols.append(macd / close)
        cols.append((macd - self.ema_sig[slots]) / close)

        dev = t._bb_dev
        mavg = self.bb.mean(slots)
        bb_std = self.bb.std(slots)
        width = 2.0 * dev * bb_std
        flat = width <= (2.0 * dev * _ZERO_STD_REL) * np.abs(mavg)
        lband = mavg - dev * bb_std
        hband = mavg + dev * bb_std
        with np.errstate(divide="ignore", invalid="ignore"):
            pband = (close - lband) / (hband - lband)
        cols.append(np.where(flat, 0.5, pband))

        cols.append(self.atr[slots] / close)

        vmean = self.vol.mean(slots)
        vstd = self.vol.std(slots)
        spread = vstd > _ZERO_STD_REL * np.abs(vmean)
        with np.errstate(divide="ignore", invalid="ignore"):
            volz = (volume - vmean) / vstd
        cols.append(np.where(spread, volz, 0.0))

        rs = self.rv_s.std(slots)
        rl = self.rv_l.std(slots)
        moving = (rs > 0.0) & (rl > 0.0)
        regime = np.zeros(len(slots))
        if moving.any():
            regime[moving] = _logs(rs[moving] / rl[moving])
        cols.append(regime)

        cols.append((self.sma_f.mean(slots) - self.sma_s.mean(slots)) / close)
        return np.column_stack(cols)


def update_features(
    features: Sequence[OnlineFeatures | BankedFeatures], bars: Sequence[OHLCV]
) -> tuple[list[np.ndarray | None], list[str | None]]:
    """``update`` of each symbol's features with its bar (distinct symbols), the banked ones of
    each bank in one pass: rows (None while warming) and refusal messages, in input order."""
    k = len(features)
    rows: list[np.ndarray | None] = [None] * k
    errors: list[str | None] = [None] * k
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(features):
        if isinstance(f, BankedFeatures):
            groups.setdefault(id(f.bank), []).append(i)
            continue
        try:
            rows[i] = f.update(*bars[i])
        except ValueError as exc:
            errors[i] = str(exc)
    for members in groups.values():
        bank = features[members[0]].bank  # type: ignore[union-attr]
        got, refused = bank.update_batch(
            [features[i] for i in members],  # type: ignore[misc]
            [bars[i] for i in members],
        )
        for i, row, error in zip(members, got, refused, strict=True):
            rows[i] = row
            errors[i] = error
    return rows, errors
