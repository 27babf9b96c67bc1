"""The feature bank's per-bar arithmetic as compiled loops (numba, the optional ``fast`` extra):
``OnlineFeatures.update`` for every symbol of a batch in one native call. ``shared.feature_bank``
uses it when numba imports (``make install`` installs it), else its numpy pass; both are
bit-identical to ``OnlineFeatures``. A bank pass of 100 symbols: ~60 us against ~300 us for the
numpy pass (about 120 small numpy calls); the light Docker image leaves numba out (importing it
adds ~100 MB of resident memory, LLVM, to a process; the image ~210 MB).

Each symbol's step is scalar code in the same IEEE operations and the same order as
``OnlineFeatures.update`` (``shared.features``), so the rows are bit-identical to it: numba
compiles without fast-math and LLVM does not contract ``a * b + c`` into an FMA without it;
``math.log`` compiles to a call of libm's ``log``, the function CPython's ``math.log`` calls; a
window's exact re-sum runs CPython's own ``math.fsum`` algorithm (``_fsum``). Tests check the
log on 300,000 inputs, the fsum on cancelling and wide-range sums, and every row against
``OnlineFeatures``. What stays in Python (``CompiledSteps``, between the two calls, in
``OnlineFeatures``' order): the ATR seed (``np.mean``, once in a symbol's life), a refused bar's
message, and a re-sum whose sum is not finite (``math.fsum``'s own overflow and inf rules):

* ``advance`` checks each bar (a refused bar leaves its symbol untouched), moves the closes'
  ring, the four EWMs, MACD's signal, ATR and the six rolling windows (with the re-sums that
  fall due every ``n`` pushes); it flags a refused bar, an ATR seed and a re-sum left to Python;
* ``rows_kernel`` reads each window's mean, then (``stage`` 0) re-anchors a stale std
  (``_Rolling.std``'s test) in place; with nothing left to Python it writes the rows at once,
  else the bank re-sums the flagged windows and calls it again with ``stage`` 1, which reuses
  the means read before the re-sum (as ``OnlineFeatures`` reads a mean before its std).

The arrays are the bank's (``shared.feature_bank``): ``state`` (fields x slots, its rows laid out
in ``shared.feature_layout``) and ``ring`` (slots x buffers). Constants travel in two small
arrays (``F_*`` and ``I_*`` indices below): every argument costs the dispatcher a type check, so
fewer arguments, cheaper calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from shared.feature_layout import (
    ANCHOR,
    ATR,
    CI,
    COUNT,
    EMA_FAST,
    EMA_SLOW,
    N_WINDOWS,
    POS,
    PREV,
    RSI_DN,
    RSI_UP,
    SEEN,
    SIG,
    SINCE,
    STD_WINDOWS,
    SUM,
    SUM2,
)
from shared.features import _ZERO_STD_REL, invalid_bar_message

if TYPE_CHECKING:  # the bank imports this module
    from shared.feature_bank import OHLCV, FeatureBank

# float constants: the four EWMs' (b, a, den) (RSI up, RSI down, EMA fast, EMA slow), MACD
# signal's, the Bollinger deviation and the zero-width threshold
F_EWM_B, F_EWM_A, F_EWM_DEN = 0, 4, 8
F_SIG_B, F_SIG_A, F_SIG_DEN, F_BB_DEV, F_ZERO_STD_REL = 12, 13, 14, 15, 16
N_F = 17
# int constants: ring lengths and offsets, windows' sizes and offsets, then the horizons
I_HIST_LEN, I_ATR_N, I_TR_AT, I_MACD_SLOW, I_MACD_FAST, I_WARMUP = range(6)
I_WIN_N = 6  # six sizes
I_WIN_AT = 12  # six offsets into a ring row
I_N_HORIZONS = 18
I_HORIZONS = 19  # then the horizons themselves

# flag columns, one row per bar of the batch
FLAG_REFUSED, FLAG_ATR_SEED = 0, 1
FLAG_WINDOW = 2  # + window: one of the three marks below
FLAG_DONE = 8  # the bar is past the warm-up: its row was written
N_FLAGS = 9
# a re-sum left to the bank's Python (its sum is not finite): due every n pushes (advance), or
# a stale std's re-anchor (rows_kernel)
DUE, STALE = 1, 2
STALE_RESUMMED = 3  # a stale std re-anchored in the kernel (for the tests' counts)

_ADVANCE_SIGNATURE = (
    "int64(f8[:, ::1], f8[:, ::1], i8[::1], f8[:, ::1], f8[::1], i8[::1], i1[:, ::1])"
)
_ROWS_SIGNATURE = (
    "int64(f8[:, ::1], f8[:, ::1], i8[::1], f8[:, ::1], f8[::1], i8[::1], i1[:, ::1], "
    "f8[:, ::1], f8[:, ::1], i8)"
)


@njit
def _fsum(values: np.ndarray, n: int, partials: np.ndarray) -> float:
    """``math.fsum(values[:n])`` by CPython's own algorithm (Shewchuk's exact partials, then
    its half-even correction), so the same bits; NaN where CPython would leave the finite path
    (a non-finite partial: overflow or a non-finite value), for the bank to redo in Python."""
    count = 0
    for k in range(n):
        x = values[k]
        i = 0
        for j in range(count):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        count = i
        if x != 0.0:
            if not math.isfinite(x):
                return np.nan
            partials[count] = x
            count += 1
    if count == 0:
        return 0.0
    count -= 1
    hi = partials[count]
    lo = 0.0
    while count > 0:
        x = hi
        count -= 1
        y = partials[count]
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            break
    if count > 0 and (
        (lo < 0.0 and partials[count - 1] < 0.0) or (lo > 0.0 and partials[count - 1] > 0.0)
    ):
        y = lo * 2.0
        x = hi + y
        if y == x - hi:
            hi = x
    return hi


@njit
def _scratch(ip: np.ndarray) -> np.ndarray:
    """Room for a window's deviations (first half) and fsum's partials (second half)."""
    largest = 0
    for w in range(N_WINDOWS):
        largest = max(largest, ip[I_WIN_N + w])
    return np.empty(2 * largest + 2)


@njit
def _resum(
    state: np.ndarray, ring: np.ndarray, s: int, w: int, n: int, at: int, scratch: np.ndarray
) -> bool:
    """``_Rolling._resum`` of window ``w`` of slot ``s``: anchor on the exact mean, exact sums
    of the deviations and their squares. False (the state untouched) when a sum is not
    finite: the bank's Python re-sum then does what ``math.fsum`` does."""
    half = scratch.shape[0] // 2
    devs = scratch[:half]
    partials = scratch[half:]
    values = ring[s, at : at + n]
    total = _fsum(values, n, partials)
    if math.isnan(total):
        return False
    anchor = total / n
    for i in range(n):
        devs[i] = values[i] - anchor
    s1 = _fsum(devs, n, partials)
    for i in range(n):
        devs[i] = devs[i] * devs[i]
    s2 = _fsum(devs, n, partials)
    if math.isnan(s1) or math.isnan(s2):
        return False
    state[ANCHOR + w, s] = anchor
    state[SUM + w, s] = s1
    state[SUM2 + w, s] = s2
    state[SINCE + w, s] = 0.0
    return True


def _compiled(signature: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Compiled for ``signature`` at import, with an on-disk cache when one is writable (next
    to this file, or ``NUMBA_CACHE_DIR``); else (a read-only install) in memory, ~1 s."""

    def wrap(function: Callable[..., int]) -> Callable[..., int]:
        try:
            return njit(signature, cache=True)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(signature)(function)

    return wrap


@_compiled(_ADVANCE_SIGNATURE)
def advance(state, ring, slots, bars, fp, ip, flags):  # typed by the signature
    """One bar (row of ``bars``: open, high, low, close, volume) per slot: the update of
    ``OnlineFeatures.update`` up to its row. Returns how many flags the bank must serve."""
    pending = 0
    hist_len = ip[I_HIST_LEN]
    atr_n = ip[I_ATR_N]
    scratch = _scratch(ip)
    for j in range(slots.shape[0]):
        s = slots[j]
        high = bars[j, 1]
        low = bars[j, 2]
        close = bars[j, 3]
        volume = bars[j, 4]
        # NaN fails every comparison: a bad bar is refused before it can poison the state
        if not (
            low > 0.0
            and low <= high
            and high < np.inf
            and close > 0.0
            and close < np.inf
            and volume >= 0.0
            and volume < np.inf
        ):
            flags[j, FLAG_REFUSED] = 1
            pending += 1
            continue
        seen = int(state[SEEN, s])
        first = seen == 0
        prev = state[PREV, s]

        # returns: the ring of closes
        ci = int(state[CI, s])
        ring[s, ci] = close
        state[CI, s] = ci + 1 if ci + 1 < hist_len else 0

        # RSI: the first bar's diff is NaN, which ta turns into 0.0 up and down
        if first:
            up = 0.0
            dn = 0.0
        else:
            diff = close - prev
            up = diff if diff > 0 else 0.0
            dn = -diff if diff < 0 else 0.0
        # the four EWMs (RSI up, RSI down, EMA fast, EMA slow): _Ewm.push, nobs == seen
        for e in range(4):
            x = up if e == 0 else dn if e == 1 else close
            value = state[RSI_UP + e, s]
            if first:
                value = x
            elif value != x:
                value = (fp[F_EWM_B + e] * value + fp[F_EWM_A + e] * x) / fp[F_EWM_DEN + e]
            state[RSI_UP + e, s] = value

        # MACD's signal EWM is pushed from the macd_slow-th bar on (its first push sets it)
        after = seen + 1
        if after >= ip[I_MACD_SLOW] and after >= ip[I_MACD_FAST]:
            macd = state[EMA_FAST, s] - state[EMA_SLOW, s]
            sig = state[SIG, s]
            if after == ip[I_MACD_SLOW]:
                sig = macd
            elif sig != macd:
                sig = (fp[F_SIG_B] * sig + fp[F_SIG_A] * macd) / fp[F_SIG_DEN]
            state[SIG, s] = sig

        # ATR (ta: the first true range is high - low), seeded with the mean of the first n
        span = high - low
        tr = span
        if not first:
            t = abs(high - prev)
            if t > tr:
                tr = t
            t = abs(low - prev)
            if t > tr:
                tr = t
        if seen < atr_n:
            ring[s, ip[I_TR_AT] + seen] = tr
            if seen == atr_n - 1:
                flags[j, FLAG_ATR_SEED] = 1
                pending += 1
        else:
            state[ATR, s] = (state[ATR, s] * (atr_n - 1) + tr) / float(atr_n)

        # the six rolling windows (_Rolling.push); the log-return ones skip the first bar
        logret = 0.0 if first else math.log(close / prev)
        for w in range(N_WINDOWS):
            if w == 2 or w == 3:
                if first:
                    continue
                x = logret
            elif w == 1:
                x = volume
            else:
                x = close
            n = ip[I_WIN_N + w]
            at = ip[I_WIN_AT + w]
            i = int(state[POS + w, s])
            count = state[COUNT + w, s]
            if count == 0:
                state[ANCHOR + w, s] = x  # deviations from the first value
            anchor = state[ANCHOR + w, s]
            total = state[SUM + w, s]
            total2 = state[SUM2 + w, s]
            if count >= n:
                d_old = ring[s, at + i] - anchor
                total = total - d_old
                total2 = total2 - d_old * d_old
            else:
                count += 1
            ring[s, at + i] = x
            d = x - anchor
            state[SUM + w, s] = total + d
            state[SUM2 + w, s] = total2 + d * d
            state[COUNT + w, s] = count
            state[POS + w, s] = i + 1 if i + 1 < n else 0
            since = state[SINCE + w, s] + 1
            state[SINCE + w, s] = since
            if since >= n and count >= n and not _resum(state, ring, s, w, n, at, scratch):
                flags[j, FLAG_WINDOW + w] = DUE  # a non-finite sum: the bank's Python re-sum
                pending += 1

        state[PREV, s] = close
        state[SEEN, s] = after
    return pending


@_compiled(_ROWS_SIGNATURE)
def rows_kernel(state, ring, slots, bars, fp, ip, flags, means, out, stage):
    """The feature rows (``out[j]``, ``flags[j, FLAG_DONE]``) of the bars past the warm-up,
    as ``OnlineFeatures.update``'s tail. Stage 0 reads the means and re-anchors the stale stds
    in place; a re-anchor left to Python (``STALE``: its sum is not finite) is counted and
    returned, and then no row is written; stage 1 writes the rows with the means stage 0 read
    (the bank re-summed the flagged windows in between)."""
    warmup = ip[I_WARMUP]
    k = slots.shape[0]
    if stage == 0:
        stale = 0
        scratch = _scratch(ip)
        for j in range(k):
            s = slots[j]
            if flags[j, FLAG_REFUSED] or state[SEEN, s] < warmup:
                continue
            for w in range(N_WINDOWS):
                n = ip[I_WIN_N + w]
                means[w, j] = state[ANCHOR + w, s] + state[SUM + w, s] / n
                if w < STD_WINDOWS:
                    m = state[SUM + w, s] / n
                    var = state[SUM2 + w, s] / n - m * m
                    if (
                        m * m > 16.0 * var
                        and abs(m) > 1e-12 * abs(state[ANCHOR + w, s])
                        and state[COUNT + w, s] >= n
                    ):
                        if _resum(state, ring, s, w, n, ip[I_WIN_AT + w], scratch):
                            flags[j, FLAG_WINDOW + w] = STALE_RESUMMED
                        else:
                            flags[j, FLAG_WINDOW + w] = STALE
                            stale += 1
        if stale:
            return stale

    dev = fp[F_BB_DEV]
    zero = fp[F_ZERO_STD_REL]
    n_horizons = ip[I_N_HORIZONS]
    hist_len = ip[I_HIST_LEN]
    stds = np.empty(STD_WINDOWS)
    for j in range(k):
        s = slots[j]
        if flags[j, FLAG_REFUSED] or state[SEEN, s] < warmup:
            continue
        flags[j, FLAG_DONE] = 1
        close = bars[j, 3]
        volume = bars[j, 4]
        for w in range(STD_WINDOWS):
            n = ip[I_WIN_N + w]
            m = state[SUM + w, s] / n
            var = state[SUM2 + w, s] / n - m * m
            stds[w] = math.sqrt(var) if var > 0.0 else 0.0

        last = int(state[CI, s]) - 1
        for q in range(n_horizons):
            at = last - ip[I_HORIZONS + q]
            while at < 0:
                at += hist_len
            out[j, q] = math.log(close / ring[s, at])
        c = n_horizons
        up = state[RSI_UP, s]
        dn = state[RSI_DN, s]
        out[j, c] = 100.0 if dn == 0 else 100.0 - (100.0 / (1.0 + up / dn))
        macd = state[EMA_FAST, s] - state[EMA_SLOW, s]
        out[j, c + 1] = macd / close
        out[j, c + 2] = (macd - state[SIG, s]) / close
        mavg = means[0, j]
        bb_std = stds[0]
        if 2.0 * dev * bb_std <= (2.0 * dev * zero) * abs(mavg):
            out[j, c + 3] = 0.5
        else:
            lband = mavg - dev * bb_std
            hband = mavg + dev * bb_std
            out[j, c + 3] = (close - lband) / (hband - lband)
        out[j, c + 4] = state[ATR, s] / close
        vmean = means[1, j]
        vstd = stds[1]
        out[j, c + 5] = (volume - vmean) / vstd if vstd > zero * abs(vmean) else 0.0
        rs = stds[2]
        rl = stds[3]
        out[j, c + 6] = math.log(rs / rl) if rs > 0.0 and rl > 0.0 else 0.0
        out[j, c + 7] = (means[4, j] - means[5, j]) / close
    return 0


class CompiledSteps:
    """A bank's constants in the kernels' layout, and its banked update: the two kernel calls
    and, between them, the flagged steps that stay in Python (the bank's own code for them)."""

    def __init__(self, bank: FeatureBank, ewms: list[tuple[float, float, float]]) -> None:
        """``ewms``: (b, a, den) of RSI up, RSI down, EMA fast, EMA slow, MACD signal."""
        c = bank.config
        self.bank = bank
        self.n_names = len(bank.names)
        sizes = bank._win_sizes
        self.fp = np.array(
            [
                *(b for b, _, _ in ewms[:4]),
                *(a for _, a, _ in ewms[:4]),
                *(den for _, _, den in ewms[:4]),
                *(*ewms[4], bank._bb_dev, _ZERO_STD_REL),
            ]
        )
        self.ip = np.array(
            [
                *(bank._hist_len, bank._atr_n, bank._tr_at, c.macd_slow, c.macd_fast),
                *(bank.warmup_bars, *sizes, *bank._win_at[:, 0].tolist()),
                *(len(c.return_horizons), *c.return_horizons),
            ],
            dtype=np.int64,
        )
        if len(self.fp) != N_F or len(sizes) != N_WINDOWS:
            raise ValueError("the bank's constants do not fit shared.feature_kernel's layout")

    def update(
        self,
        slot_list: list[int],
        bars: list[OHLCV],
        where: list[int],
        rows: list[np.ndarray | None],
        errors: list[str | None],
    ) -> None:
        """``FeatureBank._update_banked`` (same arguments, same results)."""
        bank = self.bank
        k = len(slot_list)
        slots = np.array(slot_list, dtype=np.int64)
        x = np.array(bars, dtype=np.float64).reshape(k, 5)
        flags = np.zeros((k, N_FLAGS), dtype=np.int8)
        if advance(bank.state, bank.ring, slots, x, self.fp, self.ip, flags):
            for j in np.flatnonzero(flags[:, FLAG_REFUSED]).tolist():
                _, h, lo, c, v = (float(value) for value in bars[j])
                errors[where[j]] = invalid_bar_message(h, lo, c, v)
            n, at = bank._atr_n, bank._tr_at
            for j in np.flatnonzero(flags[:, FLAG_ATR_SEED]).tolist():
                bank.state[ATR, slots[j]] = float(np.mean(bank.ring[slots[j], at : at + n].copy()))
            self._resum(slots, flags, DUE)
        means = np.empty((N_WINDOWS, k))
        out = np.empty((k, self.n_names))
        if rows_kernel(bank.state, bank.ring, slots, x, self.fp, self.ip, flags, means, out, 0):
            self._resum(slots, flags, STALE)
            rows_kernel(bank.state, bank.ring, slots, x, self.fp, self.ip, flags, means, out, 1)
        for j in np.flatnonzero(flags[:, FLAG_DONE]).tolist():
            rows[where[j]] = out[j]

    def _resum(self, slots: np.ndarray, flags: np.ndarray, mark: int) -> None:
        """The exact re-sums flagged ``mark``, window by window (``FeatureBank._resum`` on the
        state itself: its columns are the slots)."""
        windows = flags[:, FLAG_WINDOW : FLAG_WINDOW + N_WINDOWS] == mark
        for w in np.flatnonzero(windows.any(axis=0)).tolist():
            chosen = slots[np.flatnonzero(windows[:, w])]
            self.bank._resum(self.bank.state, chosen, chosen, w)
