"""Online features of many symbols held as arrays: one pass updates K symbols' rows.

The pass is compiled (``shared.feature_kernel``, numba: ~60 us for 100 symbols, the optional
``fast`` extra, which ``make install`` installs) or, without numba (the light Docker image),
the numpy pass in this module (~300 us: about 120 small numpy calls). Both give the same rows
bit for bit (the tests run both); the rest of this docstring describes the numpy pass, the
kernel's own docstring how it keeps the same bits.

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
batched update of at least ``ADOPT_MIN`` symbols; a lone bar or a batch of at most
``LEAVE_MAX`` moves it back out (``_leave``: the exact inverse, ~13 us) rather than pay a whole
bank pass (~125 us); a batch in between updates its banked symbols in a bank pass.
A config with the optional regime block is not vectorised: its symbols stay ``OnlineFeatures``.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Sequence

import msgspec
import numpy as np

try:  # the compiled kernel (numba, the optional ``fast`` extra); else the numpy pass below
    from shared import feature_kernel
except ImportError:  # pragma: no cover - exercised by an install without numba
    feature_kernel = None  # type: ignore[assignment]
except Exception as exc:  # pragma: no cover - numba installed but failing (its LLVM, a CPU)
    # an optional accelerator must not take the service down: the same rows, slower
    warnings.warn(
        f"shared.feature_kernel did not load ({exc!r}): the numpy pass runs", stacklevel=1
    )
    feature_kernel = None  # type: ignore[assignment]
from shared import feature_layout as layout
from shared.feature_config import FeatureConfig, feature_names, warmup_bars
from shared.feature_layout import (
    ATR,
    CI,
    EMA_FAST,
    EMA_SLOW,
    N_FIELDS,
    PREV,
    RSI_DN,
    RSI_UP,
    SEEN,
    SIG,
    STD_WINDOWS,
    WINDOWS,
)
from shared.features import _ZERO_STD_REL, OnlineFeatures, invalid_bar_message

# A smaller batch updates its not-yet-banked symbols one by one: a bank pass costs ~125 us plus
# ~1.7 us a symbol, ``OnlineFeatures.update`` ~5.5 us a symbol (measured here: even at ~35).
ADOPT_MIN = 32
# A batch of at most this many moves its banked symbols out of the bank (``_leave`` ~13 us, and
# ~14 us back in at the next big batch) rather than pay a whole bank pass; a lone bar always.
LEAVE_MAX = 4
OHLCV = tuple[float, float, float, float, float]

# The state matrix's rows are ``shared.feature_layout``'s; here each window field's block of rows
# (one per rolling window) is a slice: the numpy pass moves a field of every window at once.
POS, COUNT, SINCE, ANCHOR, SUM, SUM2 = (
    layout.window_rows(start)
    for start in (layout.POS, layout.COUNT, layout.SINCE, layout.ANCHOR, layout.SUM, layout.SUM2)
)


def _logs(x: np.ndarray) -> np.ndarray:
    """``math.log`` element by element (numpy's log is not bit-identical to libm's)."""
    return np.fromiter(map(math.log, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


class BankedFeatures:
    """One symbol's online features with ``OnlineFeatures``' interface: its own
    ``OnlineFeatures`` until the bank adopts it, then a column (``slot``) of the bank.

    A handle whose ``update`` is wrapped (an instance attribute: a fault injected by a test, a
    profiler's timer) is updated through the wrapper, one by one, never by the bank directly."""

    def __init__(self, bank: FeatureBank) -> None:
        self.bank = bank
        self.online: OnlineFeatures | None = OnlineFeatures(bank.config)
        self.slot = -1
        self.finalizer: weakref.finalize[[int], BankedFeatures] | None = None  # frees the slot

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
        return int(self.bank.state[SEEN, self.slot])

    @property
    def ready(self) -> bool:
        return self.bars_seen >= self.bank.warmup_bars

    @property
    def atr(self) -> float | None:
        if self.online is not None:
            return self.online.atr
        value = float(self.bank.state[ATR, self.slot])
        return None if math.isnan(value) else value

    def update(
        self, open: float, high: float, low: float, close: float, volume: float
    ) -> np.ndarray | None:
        """``OnlineFeatures.update``: the row, None while warming, ValueError for a bad bar."""
        if self.online is None:  # a lone bar: cheaper out of the bank than a bank pass
            self.bank._leave(self)
        assert self.online is not None
        return self.online.update(open, high, low, close, volume)


class FeatureBank:
    """The online feature state of many symbols of one ``FeatureConfig`` (see the module doc).

    ``state`` (``N_FIELDS`` x slots) holds every scalar (counts and positions as exact float64
    integers), one row per field; ``ring`` (slots x L) every buffer: the closes
    (``hist_len``), the first ``atr_window`` true ranges, then each rolling window's values. A
    batch whose slots are consecutive (the usual case: symbols adopted together arrive in the
    same order) works on a view of ``state``; any other takes a copy and writes it back."""

    def __init__(
        self, config: FeatureConfig, capacity: int = 64, compiled: bool | None = None
    ) -> None:
        """``compiled``: the banked update in ``shared.feature_kernel`` (default: when numba
        is installed) or in numpy (False); the same rows, bit for bit."""
        c = config
        self.config = c
        self.names = feature_names(c)
        self.warmup_bars = warmup_bars(c)
        self.vectorised = c.regime is None
        # its constants are the ones every row uses (the regime block is not vectorised)
        t = OnlineFeatures(msgspec.structs.replace(c, regime=None))
        ewms = (t._rsi_up, t._rsi_dn, t._ema_fast, t._ema_slow)
        self._ewm_b = np.array([[e._b] for e in ewms])
        self._ewm_a = np.array([[e._a] for e in ewms])
        self._ewm_den = np.array([[e._den] for e in ewms])
        self._sig = (t._ema_sig._b, t._ema_sig._a, t._ema_sig._den)
        self._bb_dev = t._bb_dev
        self._horizons = np.asarray(c.return_horizons, dtype=np.intp)[:, None]
        self._hist_len = max(c.return_horizons) + 1
        self._atr_n = c.atr_window
        self._tr_at = self._hist_len
        sizes = [getattr(t, name)._n for name in WINDOWS]
        self._win_sizes = sizes
        self._win_n = np.array(sizes, dtype=np.float64)[:, None]
        offsets = np.cumsum([self._tr_at + self._atr_n, *sizes])
        self._win_at = offsets[:-1].astype(np.intp)[:, None]
        self._free: list[int] = []
        self._used = 0
        self.state = np.zeros((N_FIELDS, capacity))
        self.ring = np.zeros((capacity, int(offsets[-1])))
        if compiled and feature_kernel is None:
            raise ValueError("compiled=True needs numba (pip install 'rltrader[fast]')")
        self.compiled = (
            feature_kernel.CompiledSteps(self, [(e._b, e._a, e._den) for e in (*ewms, t._ema_sig)])
            if feature_kernel is not None and compiled is not False
            else None
        )

    def online(self) -> BankedFeatures:
        return BankedFeatures(self)

    # ------------------------------------------------------------------ slots
    def _release(self, slot: int) -> None:
        self._free.append(slot)

    def _adopt(self, handle: BankedFeatures) -> None:
        """Move a symbol's ``OnlineFeatures`` state into a free slot (its own until it dies or
        leaves the bank: ``_leave``)."""
        f = handle.online
        assert f is not None and f.config == self.config
        if self._free:
            slot = self._free.pop()
        else:
            if self._used == self.state.shape[1]:
                self.state = np.concatenate([self.state, np.zeros_like(self.state)], axis=1)
                self.ring = np.concatenate([self.ring, np.zeros_like(self.ring)])
            slot = self._used
            self._used += 1
        self._load(slot, f)
        handle.online = None
        handle.slot = slot
        handle.finalizer = weakref.finalize(handle, self._release, slot)

    def _leave(self, handle: BankedFeatures) -> None:
        """The inverse of ``_adopt``: the symbol's state back in an ``OnlineFeatures`` (a lone
        bar or a small batch then costs ``OnlineFeatures.update``, not a whole bank pass)."""
        assert handle.online is None and handle.finalizer is not None
        handle.online = self._export(handle.slot)
        handle.finalizer.detach()
        self._release(handle.slot)
        handle.slot = -1
        handle.finalizer = None

    def _export(self, slot: int) -> OnlineFeatures:
        f = OnlineFeatures(self.config)
        col = self.state[:, slot].tolist()
        ring = self.ring[slot].tolist()
        seen = int(col[SEEN])
        f.bars_seen = seen
        f._ci = int(col[CI])
        f._prev_close, f._atr = col[PREV], col[ATR]
        f._closes = ring[: self._hist_len]
        f._tr_sum = ring[self._tr_at : self._tr_at + min(seen, self._atr_n)]
        for ewm, row in zip(
            (f._rsi_up, f._rsi_dn, f._ema_fast, f._ema_slow),
            (RSI_UP, RSI_DN, EMA_FAST, EMA_SLOW),
            strict=True,
        ):
            ewm.value, ewm.nobs = col[row], seen  # every accepted bar pushes each once
        f._ema_sig.value = col[SIG]
        f._ema_sig.nobs = max(0, seen - self.config.macd_slow + 1)
        for w, name in enumerate(WINDOWS):
            r = getattr(f, name)
            at = int(self._win_at[w, 0])
            r._buf = ring[at : at + r._n]
            r._i = int(col[POS.start + w])
            r._count = int(col[COUNT.start + w])
            r._since = int(col[SINCE.start + w])
            r._anchor, r._s, r._s2 = col[ANCHOR.start + w], col[SUM.start + w], col[SUM2.start + w]
        return f

    def _load(self, slot: int, f: OnlineFeatures) -> None:
        col = self.state[:, slot]
        col[[SEEN, CI, PREV, ATR]] = (f.bars_seen, f._ci, f._prev_close, f._atr)
        col[[RSI_UP, RSI_DN, EMA_FAST, EMA_SLOW, SIG]] = [
            e.value for e in (f._rsi_up, f._rsi_dn, f._ema_fast, f._ema_slow, f._ema_sig)
        ]
        ring = self.ring[slot]
        ring[: self._hist_len] = f._closes
        ring[self._tr_at : self._tr_at + len(f._tr_sum)] = f._tr_sum
        for w, name in enumerate(WINDOWS):
            r = getattr(f, name)
            at = int(self._win_at[w, 0])
            ring[at : at + r._n] = r._buf
            for field, value in zip(
                (POS, COUNT, SINCE, ANCHOR, SUM, SUM2),
                (r._i, r._count, r._since, r._anchor, r._s, r._s2),
                strict=True,
            ):
                col[field.start + w] = value

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
        adopt = self.vectorised and k >= ADOPT_MIN
        slots: list[int] = []
        banked: list[int] = []
        for i, handle in enumerate(handles):
            if handle.bank is not self:
                raise ValueError("a handle of another bank")
            wrapped = "update" in handle.__dict__
            if handle.online is not None and adopt and not wrapped:
                self._adopt(handle)
            elif handle.online is None and k <= LEAVE_MAX:  # too few for a bank pass to pay
                self._leave(handle)
            if handle.online is None and not wrapped:
                slots.append(handle.slot)
                banked.append(i)
                continue
            try:  # one by one, in order (a symbol twice gets its bars in turn)
                rows[i] = handle.update(*bars[i])
            except ValueError as exc:
                errors[i] = str(exc)
        if len(set(slots)) != len(slots):  # a banked symbol twice: one bar after the other
            for i in banked:
                (rows[i],), (errors[i],) = self.update_batch([handles[i]], [bars[i]])
        elif slots and self.compiled is not None:
            self.compiled.update(slots, [bars[i] for i in banked], banked, rows, errors)
        elif slots:
            self._update_banked(slots, [bars[i] for i in banked], banked, rows, errors)
        return rows, errors

    def _update_banked(
        self,
        slot_list: list[int],
        bars: list[OHLCV],
        where: list[int],
        rows: list[np.ndarray | None],
        errors: list[str | None],
    ) -> None:
        x = np.array(bars, dtype=np.float64).reshape(len(bars), 5).T
        high, low, close, volume = x[1], x[2], x[3], x[4]
        with np.errstate(all="ignore"):  # NaN fails every comparison: refused
            ok = np.isfinite(x[1:]).all(axis=0) & (low > 0.0) & (low <= high)
            ok &= (close > 0.0) & (volume >= 0.0)
            if not ok.all():
                for j in np.flatnonzero(~ok).tolist():
                    _, h, lo, c, v = (float(value) for value in bars[j])
                    errors[where[j]] = invalid_bar_message(h, lo, c, v)
                keep = np.flatnonzero(ok)
                x = x[:, keep]
                slot_list = [slot_list[j] for j in keep.tolist()]
                where = [where[j] for j in keep.tolist()]
            if not slot_list:
                return
            done, block = self._advance(slot_list, x[1], x[2], x[3], x[4])
        for j, row in zip(done.tolist(), block, strict=True):
            rows[where[j]] = row

    def _resum(self, g: np.ndarray, js: np.ndarray, slots: np.ndarray, w: int) -> None:
        """``_Rolling._resum`` of window ``w`` for columns ``js`` of the batch's state ``g``
        (``math.fsum``: exactly rounded, so the storage order of the ring does not matter)."""
        n = self._win_sizes[w]
        at = int(self._win_at[w, 0])
        values = self.ring[slots, at : at + n]
        anchor = np.array([math.fsum(v) for v in values.tolist()]) / n
        devs = values - anchor[:, None]
        g[ANCHOR.start + w, js] = anchor
        g[SUM.start + w, js] = [math.fsum(d) for d in devs.tolist()]
        g[SUM2.start + w, js] = [math.fsum(d) for d in (devs * devs).tolist()]
        g[SINCE.start + w, js] = 0.0

    def _advance(
        self,
        slot_list: list[int],
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``OnlineFeatures.update`` on valid bars of distinct slots: the indices of the bars
        past the warm-up and their (m, k) feature block."""
        c = self.config
        slots = np.array(slot_list, dtype=np.intp)
        start = slot_list[0]
        consecutive = slot_list == list(range(start, start + len(slot_list)))
        # the batch's state: a view (written in place) or a copy (written back at the end)
        g = self.state[:, start : start + len(slot_list)] if consecutive else self.state[:, slots]
        ring = self.ring
        seen = g[SEEN]
        first = seen == 0
        any_first = bool(first.any())
        prev = g[PREV]
        hl = self._hist_len
        ci = g[CI].astype(np.intp)

        # returns and the log return: one math.log pass over close / past closes
        past = ring[slots, (ci - self._horizons) % hl]
        logs = _logs(close / np.vstack((past, prev)))
        ring[slots, ci] = close
        g[CI] = np.where(ci + 1 < hl, ci + 1, 0)

        # RSI's Wilder EWMs and MACD's EMAs as one (4, K) block; the first bar's diff is NaN,
        # which gives 0.0 up and down (as ta's fillna)
        diff = close - prev
        inputs = np.vstack((np.where(diff > 0, diff, 0.0), np.where(diff < 0, -diff, 0.0)))
        inputs = np.vstack((inputs, close, close))
        ewm = g[RSI_UP : EMA_SLOW + 1]
        moved = (self._ewm_b * ewm + self._ewm_a * inputs) / self._ewm_den
        ewm = np.where(ewm != inputs, moved, ewm)
        if any_first:
            ewm = np.where(first, inputs, ewm)
        g[RSI_UP : EMA_SLOW + 1] = ewm

        # MACD's signal EWM is pushed from the macd_slow-th bar on
        after = seen + 1
        macd = ewm[2] - ewm[3]
        sig = g[SIG]
        b, a, den = self._sig
        pushed = np.where(sig != macd, (b * sig + a * macd) / den, sig)
        pushed = np.where(after == c.macd_slow, macd, pushed)
        g[SIG] = np.where(after >= c.macd_slow, pushed, sig)

        # ATR: the first true range is high - low; seeded with the mean of the first n
        span = high - low
        tr = np.maximum(np.maximum(span, np.abs(high - prev)), np.abs(low - prev))
        if any_first:
            tr = np.where(first, span, tr)
        n = self._atr_n
        atr = g[ATR]
        seeding = seen < n
        if seeding.any():
            js = np.flatnonzero(seeding)
            ring[slots[js], self._tr_at + seen[js].astype(np.intp)] = tr[js]
            g[ATR] = np.where(seeding, atr, (atr * (n - 1) + tr) / float(n))
            for j in np.flatnonzero(seen == n - 1).tolist():
                at = self._tr_at
                g[ATR, j] = float(np.mean(ring[slots[j], at : at + n].copy()))
        else:
            g[ATR] = (atr * (n - 1) + tr) / float(n)

        self._push_windows(g, slots, first if any_first else None, close, volume, logs[-1])
        g[PREV] = close
        g[SEEN] = after
        done = np.flatnonzero(after >= self.warmup_bars)
        block = self._rows(g, slots, done, close, volume, logs[:-1]) if len(done) else None
        if not consecutive:
            self.state[:, slots] = g
        return done, block if block is not None else np.empty((0, len(self.names)))

    def _push_windows(
        self,
        g: np.ndarray,
        slots: np.ndarray,
        first: np.ndarray | None,
        close: np.ndarray,
        volume: np.ndarray,
        logret: np.ndarray,
    ) -> None:
        """``_Rolling.push`` of the six windows as (6, K) blocks (the log-return windows skip a
        symbol's first bar), then the exact re-sums that fall due."""
        x = np.vstack((close, volume, logret, logret, close, close))
        sizes = self._win_n
        count = g[COUNT]
        anchor = np.where(count == 0, x, g[ANCHOR])
        pos = g[POS].astype(np.intp)
        cells = (slots, self._win_at + pos)
        full = count >= sizes
        d_old = self.ring[cells] - anchor
        s = np.where(full, g[SUM] - d_old, g[SUM])
        s2 = np.where(full, g[SUM2] - d_old * d_old, g[SUM2])
        d = x - anchor
        s = s + d
        s2 = s2 + d * d
        count = np.where(full, count, count + 1)
        since = g[SINCE] + 1
        new = [
            (ANCHOR, anchor),
            (SUM, s),
            (SUM2, s2),
            (COUNT, count),
            (POS, np.where(pos + 1 < sizes, pos + 1, 0)),
            (SINCE, since),
        ]
        if first is not None:  # no log return yet: those two windows keep their state
            skip = np.zeros(x.shape, dtype=bool)
            skip[2:4, first] = True
            x = np.where(skip, self.ring[cells], x)
            new = [(field, np.where(skip, g[field], value)) for field, value in new]
            count, since = new[3][1], new[5][1]
        self.ring[cells] = x
        for field, value in new:
            g[field] = value
        due = (since >= sizes) & (count >= sizes)
        if due.any():
            for w in np.flatnonzero(due.any(axis=1)).tolist():
                js = np.flatnonzero(due[w])
                self._resum(g, js, slots[js], w)

    def _rows(
        self,
        g: np.ndarray,
        slots: np.ndarray,
        done: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        returns: np.ndarray,
    ) -> np.ndarray:
        """The feature rows of the warm bars ``done`` of the batch (state ``g`` just advanced);
        the std of a window may re-anchor it first, as ``_Rolling.std`` does."""
        sel: slice | np.ndarray = slice(None) if len(done) == len(slots) else done
        close, volume = close[sel], volume[sel]
        sizes = self._win_n
        mean = g[ANCHOR, sel] + g[SUM, sel] / sizes
        m = g[SUM, sel] / sizes
        var = g[SUM2, sel] / sizes - m * m
        stale = (m * m > 16.0 * var) & (np.abs(m) > 1e-12 * np.abs(g[ANCHOR, sel]))
        stale &= g[COUNT, sel] >= sizes
        stale[STD_WINDOWS:] = False
        if stale.any():
            for w in np.flatnonzero(stale.any(axis=1)).tolist():
                js = np.flatnonzero(stale[w])
                cols = done[js]
                self._resum(g, cols, slots[cols], w)
                m[w, js] = g[SUM.start + w, cols] / sizes[w]
                var[w, js] = g[SUM2.start + w, cols] / sizes[w] - m[w, js] * m[w, js]
        std = np.sqrt(np.where(var > 0.0, var, 0.0))

        nh = returns.shape[0]
        out = np.empty((len(self.names), len(close)))
        out[:nh] = returns[:, sel]
        up, dn = g[RSI_UP, sel], g[RSI_DN, sel]
        out[nh] = np.where(dn == 0, 100.0, 100.0 - (100.0 / (1.0 + up / dn)))
        macd = g[EMA_FAST, sel] - g[EMA_SLOW, sel]
        out[nh + 1] = macd / close
        out[nh + 2] = (macd - g[SIG, sel]) / close
        dev = self._bb_dev
        mavg, bb_std = mean[0], std[0]
        flat = 2.0 * dev * bb_std <= (2.0 * dev * _ZERO_STD_REL) * np.abs(mavg)
        lband = mavg - dev * bb_std
        hband = mavg + dev * bb_std
        out[nh + 3] = np.where(flat, 0.5, (close - lband) / (hband - lband))
        out[nh + 4] = g[ATR, sel] / close
        vmean, vstd = mean[1], std[1]
        spread = vstd > _ZERO_STD_REL * np.abs(vmean)
        out[nh + 5] = np.where(spread, (volume - vmean) / vstd, 0.0)
        rs, rl = std[2], std[3]
        moving = (rs > 0.0) & (rl > 0.0)
        out[nh + 6] = _logs(np.where(moving, rs / rl, 1.0))  # log(1.0) is exactly 0.0
        out[nh + 7] = (mean[4] - mean[5]) / close
        return out.T.copy()  # one contiguous row per symbol


def update_features(
    features: Sequence[OnlineFeatures | BankedFeatures], bars: Sequence[OHLCV]
) -> tuple[list[np.ndarray | None], list[str | None]]:
    """``update`` of each symbol's features with its bar (distinct symbols), the banked ones of
    each bank in one pass: rows (None while warming) and refusal messages, in input order."""
    bank = getattr(features[0], "bank", None) if features else None
    if bank is not None and all(getattr(f, "bank", None) is bank for f in features):
        return bank.update_batch(features, bars)  # the usual case: one bank, every symbol
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
        handles = [f for i in members if isinstance(f := features[i], BankedFeatures)]
        got, refused = handles[0].bank.update_batch(handles, [bars[i] for i in members])
        for i, row, error in zip(members, got, refused, strict=True):
            rows[i] = row
            errors[i] = error
    return rows, errors
