"""The one feature pipeline: batch (training, backtest) and online (inference), same numbers.

``FeaturePipeline(config).batch(bars)`` computes the features over a whole bar frame with the
``ta`` package; ``FeaturePipeline(config).online()`` returns an ``OnlineFeatures`` whose
``update(open, high, low, close, volume)`` computes the same row for the newest bar in O(1) with
incremental recurrences that replicate ta/pandas exactly:

* ``ta`` EMAs are ``Series.ewm(span=n, min_periods=n, adjust=False)`` (MACD) and RSI's Wilder
  averages are ``ewm(alpha=1/n, min_periods=n, adjust=False)``; pandas computes adjust=False as
  ``y = ((1-a)*y + a*x) / ((1-a) + a)``, skipping the update when ``y == x``, seeded with the
  first observation; ``min_periods`` counts observations (RSI's first diff counts as 0.0).
* ta's ATR seeds with the plain mean of the first n true ranges (the first one is high - low,
  no previous close) and then ``atr = (atr*(n-1) + tr) / n``.
* rolling means/stds (SMA, Bollinger, volume z-score, realised volatility) use running sums of
  deviations from an anchor, re-summed exactly once per window (amortised O(1)).

Features (column order = ``names``; every value is scale-free):

==========================  ================================================================
``ret_<h>``                 log(close_t / close_{t-h}) for each horizon h
``rsi_<n>``                 ta RSI (0..100)
``macd_<f>_<s>``            ta MACD line / close
``macd_hist_<f>_<s>_<g>``   ta MACD histogram (line - signal) / close
``bb_pos_<n>_<k>``          ta Bollinger %B; 0.5 when the band has no width
``atr_<n>``                 ta ATR / close
``volz_<n>``                (volume - rolling mean) / rolling std (ddof 0); 0 when std is 0
``vol_regime_<s>_<l>``      log(realised vol short / long), std of log returns (ddof 0)
``trend_<f>_<s>``           (SMA_f - SMA_s) / close (ta SMAIndicator): the trend strength
``hmm_p<k>_<K>``, ``ac1_n``  only with ``regime`` set (off by default): ``shared.regime``'s
                            filtered HMM state probabilities and lag-1 return autocorrelation
==========================  ================================================================

No feature at bar t reads a bar after t (tests perturb the future and compare). Rows before
``warmup_bars - 1`` are all NaN in ``batch``, and ``update`` returns ``None`` until the
``warmup_bars``-th bar.

The config, the column names, the warm-up and the fingerprint are in ``shared.feature_config``;
change its ``FEATURE_CODE_VERSION`` whenever a formula here changes: it is part of
``pipeline_fingerprint``, which every model manifest records and inference checks. The
normaliser applied to these rows is ``shared.normaliser.Normaliser``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from shared.feature_config import FeatureConfig, feature_names, pipeline_fingerprint, warmup_bars
from shared.regime import OnlineRegime, regime_batch

_ZERO_STD_REL = 1e-9  # a std below this fraction of the mean level is treated as zero width


# --------------------------------------------------------------------------- batch (ta)


def _safe_div_where(num: np.ndarray, den: np.ndarray, ok: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(num.shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=ok)
    return out


def _rolling_mean_std(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and population std over n values (exact two-pass per window; NaN-aware)."""
    mean = np.full(len(x), np.nan)
    std = np.full(len(x), np.nan)
    if len(x) >= n:
        win = np.lib.stride_tricks.sliding_window_view(x, n)
        m = win.mean(axis=1)
        dev = win - m[:, None]
        mean[n - 1 :] = m
        std[n - 1 :] = np.sqrt((dev * dev).mean(axis=1))
    return mean, std


def _batch(config: FeatureConfig, bars: pd.DataFrame) -> np.ndarray:
    from ta.momentum import RSIIndicator
    from ta.trend import MACD, SMAIndicator
    from ta.volatility import AverageTrueRange, BollingerBands

    c = config
    index = pd.RangeIndex(len(bars))
    close = pd.Series(bars["close"].to_numpy(np.float64), index=index)
    high = pd.Series(bars["high"].to_numpy(np.float64), index=index)
    low = pd.Series(bars["low"].to_numpy(np.float64), index=index)
    volume = pd.Series(bars["volume"].to_numpy(np.float64), index=index)
    cl = close.to_numpy()
    cols: list[np.ndarray] = []

    for h in c.return_horizons:
        cols.append(np.log(cl / close.shift(h).to_numpy()))

    cols.append(RSIIndicator(close, window=c.rsi_window).rsi().to_numpy(np.float64))

    macd = MACD(close, window_slow=c.macd_slow, window_fast=c.macd_fast, window_sign=c.macd_signal)
    cols.append(macd.macd().to_numpy(np.float64) / cl)
    cols.append(macd.macd_diff().to_numpy(np.float64) / cl)

    # Bollinger %B as ta defines it (mavg +- k*std, ddof 0); ta's middle band, but the std from
    # an exact two-pass window: pandas' streaming rolling variance drifts (up to ~1e-7 in %B on
    # 35k crypto bars), which would break online == batch.
    bb = BollingerBands(close, window=c.bb_window, window_dev=c.bb_dev)
    mavg = bb.bollinger_mavg().to_numpy(np.float64)
    _, mstd = _rolling_mean_std(cl, c.bb_window)
    lband = mavg - c.bb_dev * mstd
    hband = mavg + c.bb_dev * mstd
    width = hband - lband
    flat = width <= (2.0 * c.bb_dev * _ZERO_STD_REL) * np.abs(mavg)
    pband = _safe_div_where(cl - lband, width, ~flat & ~np.isnan(width), 0.5)
    cols.append(np.where(np.isnan(mavg) | np.isnan(mstd), np.nan, pband))

    atr = AverageTrueRange(high, low, close, window=c.atr_window).average_true_range()
    atr_arr = atr.to_numpy(np.float64).copy()
    atr_arr[: c.atr_window - 1] = np.nan  # ta fills the warm-up with 0
    cols.append(atr_arr / cl)

    vmean, vstd = _rolling_mean_std(volume.to_numpy(), c.volume_window)
    vol = volume.to_numpy()
    ok = vstd > _ZERO_STD_REL * np.abs(vmean)
    volz = _safe_div_where(vol - vmean, vstd, ok, 0.0)
    cols.append(np.where(np.isnan(vmean), np.nan, volz))

    logret = pd.Series(np.log(cl / close.shift(1).to_numpy()), index=index)
    _, rv_s = _rolling_mean_std(logret.to_numpy(), c.vol_short)
    _, rv_l = _rolling_mean_std(logret.to_numpy(), c.vol_long)
    good = (rv_s > 0) & (rv_l > 0)
    ratio = np.ones(len(cl))
    np.divide(rv_s, rv_l, out=ratio, where=good)
    regime = np.log(ratio)
    cols.append(np.where(np.isnan(rv_l) | np.isnan(rv_s), np.nan, regime))

    sma_f = SMAIndicator(close, window=c.trend_fast).sma_indicator().to_numpy(np.float64)
    sma_s = SMAIndicator(close, window=c.trend_slow).sma_indicator().to_numpy(np.float64)
    cols.append((sma_f - sma_s) / cl)
    if c.regime is not None:
        cols.extend(regime_batch(c.regime, bars).T)

    out = np.column_stack(cols).astype(np.float64, copy=False)
    out[: warmup_bars(c) - 1, :] = np.nan
    return out


# --------------------------------------------------------------------------- online


class _Ewm:
    """pandas ``ewm(alpha=a, adjust=False, min_periods=m).mean()`` fed one value at a time."""

    __slots__ = ("_a", "_b", "_den", "nobs", "value")

    def __init__(self, alpha: float) -> None:
        self._a = alpha
        self._b = 1.0 - alpha
        self._den = self._b + alpha  # pandas divides by (old_wt + new_wt), not by 1
        self.nobs = 0
        self.value = math.nan

    def push(self, x: float) -> float:
        if self.nobs == 0:
            self.value = x
        elif self.value != x:
            self.value = (self._b * self.value + self._a * x) / self._den
        self.nobs += 1
        return self.value


class _Rolling:
    """Rolling mean and population std over the last ``n`` values, O(1) amortised.

    Keeps sums of deviations from an anchor (the window's mean at the last exact re-sum) so the
    variance does not suffer from catastrophic cancellation; re-sums exactly every ``n`` pushes.
    """

    __slots__ = ("_anchor", "_buf", "_count", "_i", "_n", "_s", "_s2", "_since")

    def __init__(self, n: int) -> None:
        self._n = n
        self._buf = [0.0] * n
        self._i = 0
        self._count = 0
        self._anchor = 0.0
        self._s = 0.0
        self._s2 = 0.0
        self._since = 0

    @property
    def full(self) -> bool:
        return self._count >= self._n

    def push(self, x: float) -> None:
        n = self._n
        i = self._i
        if self._count == 0:
            self._anchor = x  # deviations from the first value: exact for a constant series
        k = self._anchor
        if self._count >= n:
            d_old = self._buf[i] - k
            self._s -= d_old
            self._s2 -= d_old * d_old
        else:
            self._count += 1
        self._buf[i] = x
        d = x - k
        self._s += d
        self._s2 += d * d
        self._i = i + 1 if i + 1 < n else 0
        self._since += 1
        if self._since >= n and self._count >= n:
            self._resum()

    def _resum(self) -> None:
        buf = self._buf
        anchor = math.fsum(buf) / self._n
        devs = [v - anchor for v in buf]
        self._anchor = anchor
        self._s = math.fsum(devs)
        self._s2 = math.fsum(d * d for d in devs)
        self._since = 0

    def mean(self) -> float:
        return self._anchor + self._s / self._n

    def std(self) -> float:
        m = self._s / self._n
        var = self._s2 / self._n - m * m
        if m * m > 16.0 * var and abs(m) > 1e-12 * abs(self._anchor) and self._count >= self._n:
            # the anchor went stale (a regime change since the last re-sum): the subtraction
            # above would cancel most digits, so re-anchor on the window's exact mean now
            self._resum()
            m = self._s / self._n
            var = self._s2 / self._n - m * m
        return math.sqrt(var) if var > 0.0 else 0.0


def invalid_bar_message(high: float, low: float, close: float, volume: float) -> str:
    """The refusal of a bar that fails ``OnlineFeatures.update``'s check: one text for the
    online features and the bank's two passes (tests and logs match it)."""
    return f"invalid bar high={high!r} low={low!r} close={close!r} volume={volume!r}"


class OnlineFeatures:
    """Bar-by-bar twin of ``FeaturePipeline.batch``; feed bars in time order."""

    def __init__(self, config: FeatureConfig) -> None:
        c = config
        self.config = c
        self.names = feature_names(c)
        self.warmup_bars = warmup_bars(c)
        self.bars_seen = 0
        self._horizons = tuple(c.return_horizons)
        self._hist_len = max(self._horizons) + 1
        self._closes = [math.nan] * self._hist_len  # ring buffer of recent closes
        self._ci = 0
        self._prev_close = math.nan
        self._prev_high = math.nan
        self._prev_low = math.nan
        # RSI (Wilder EWMs of up/down moves)
        self._rsi_up = _Ewm(1.0 / c.rsi_window)
        self._rsi_dn = _Ewm(1.0 / c.rsi_window)
        # MACD
        self._ema_fast = _Ewm(2.0 / (c.macd_fast + 1))
        self._ema_slow = _Ewm(2.0 / (c.macd_slow + 1))
        self._ema_sig = _Ewm(2.0 / (c.macd_signal + 1))
        # ATR (ta's seeded Wilder average)
        self._atr_n = c.atr_window
        self._tr_sum: list[float] = []
        self._atr = math.nan
        # rolling windows
        self._bb = _Rolling(c.bb_window)
        self._vol = _Rolling(c.volume_window)
        self._rv_s = _Rolling(c.vol_short)
        self._rv_l = _Rolling(c.vol_long)
        self._sma_f = _Rolling(c.trend_fast)
        self._sma_s = _Rolling(c.trend_slow)
        self._bb_dev = float(c.bb_dev)
        self._regime = OnlineRegime(c.regime) if c.regime is not None else None

    @property
    def atr(self) -> float | None:
        """ta's ATR in price units for the last bar (None before ``atr_window`` bars)."""
        return None if math.isnan(self._atr) else self._atr

    @property
    def ready(self) -> bool:
        return self.bars_seen >= self.warmup_bars

    def update(
        self, open: float, high: float, low: float, close: float, volume: float
    ) -> np.ndarray | None:
        """Add one closed bar; return its feature row (float64) or None while warming up."""
        del open  # not used by any feature; part of the signature so callers pass whole bars
        c = self.config
        close = float(close)
        high = float(high)
        low = float(low)
        volume = float(volume)
        # NaN fails every comparison: a bad bar is refused before it can poison the state
        if not (
            0.0 < low <= high < math.inf and 0.0 < close < math.inf and 0.0 <= volume < math.inf
        ):
            raise ValueError(invalid_bar_message(high, low, close, volume))
        prev = self._prev_close
        first = self.bars_seen == 0

        # returns: ring buffer of closes
        hl = self._hist_len
        ci = self._ci
        self._closes[ci] = close
        self._ci = ci + 1 if ci + 1 < hl else 0

        # RSI: diff of the first bar is NaN, which ta turns into 0.0 up and down
        if first:
            up = dn = 0.0
        else:
            diff = close - prev
            up = diff if diff > 0 else 0.0
            dn = -diff if diff < 0 else 0.0
        ema_up = self._rsi_up.push(up)
        ema_dn = self._rsi_dn.push(dn)

        # MACD
        fast = self._ema_fast.push(close)
        slow = self._ema_slow.push(close)
        macd = math.nan
        sig = math.nan
        if self._ema_slow.nobs >= c.macd_slow and self._ema_fast.nobs >= c.macd_fast:
            macd = fast - slow
            sig = self._ema_sig.push(macd)

        # ATR (ta: first true range is high - low; max() skips the missing previous close)
        tr = high - low if first else max(high - low, abs(high - prev), abs(low - prev))
        n = self._atr_n
        if self.bars_seen < n:
            self._tr_sum.append(tr)
            if len(self._tr_sum) == n:
                self._atr = float(np.mean(np.asarray(self._tr_sum)))
        else:
            self._atr = (self._atr * (n - 1) + tr) / float(n)

        # rolling windows
        self._bb.push(close)
        self._vol.push(volume)
        if not first:
            logret = math.log(close / prev)
            self._rv_s.push(logret)
            self._rv_l.push(logret)
        self._sma_f.push(close)
        self._sma_s.push(close)
        regime_row = self._regime.update(close) if self._regime is not None else None

        self._prev_close = close
        self._prev_high = high
        self._prev_low = low
        self.bars_seen += 1
        if self.bars_seen < self.warmup_bars:
            return None

        out: list[float] = []
        closes = self._closes
        last = self._ci - 1
        for h in self._horizons:
            out.append(math.log(close / closes[(last - h) % hl]))

        out.append(100.0 if ema_dn == 0 else 100.0 - (100.0 / (1.0 + ema_up / ema_dn)))

        out.append(macd / close)
        out.append((macd - sig) / close)

        mavg = self._bb.mean()
        bb_std = self._bb.std()  # once: a second call returns the same value (re-sum is idempotent)
        width = 2.0 * self._bb_dev * bb_std
        if width <= (2.0 * self._bb_dev * _ZERO_STD_REL) * abs(mavg):
            out.append(0.5)
        else:
            lband = mavg - self._bb_dev * bb_std
            hband = mavg + self._bb_dev * bb_std
            out.append((close - lband) / (hband - lband))

        out.append(self._atr / close)

        vmean = self._vol.mean()
        vstd = self._vol.std()
        out.append((volume - vmean) / vstd if vstd > _ZERO_STD_REL * abs(vmean) else 0.0)

        rs = self._rv_s.std()
        rl = self._rv_l.std()
        out.append(math.log(rs / rl) if rs > 0.0 and rl > 0.0 else 0.0)

        out.append((self._sma_f.mean() - self._sma_s.mean()) / close)
        if regime_row is not None:
            out.extend(regime_row.tolist())
        return np.array(out, dtype=np.float64)

    def update_many(self, bars: pd.DataFrame) -> np.ndarray | None:
        """Feed a frame of bars (e.g. a snapshot); return the last row (or None)."""
        row: np.ndarray | None = None
        for o, h, lo, cl, v in bars[["open", "high", "low", "close", "volume"]].itertuples(
            index=False, name=None
        ):
            row = self.update(o, h, lo, cl, v)
        return row


class FeaturePipeline:
    """The project's feature pipeline for one ``FeatureConfig``."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config if config is not None else FeatureConfig()
        self.names: list[str] = feature_names(self.config)
        self.warmup_bars: int = warmup_bars(self.config)
        self.fingerprint: str = pipeline_fingerprint(self.config)

    @property
    def size(self) -> int:
        return len(self.names)

    def batch(self, bars: pd.DataFrame) -> np.ndarray:
        """(n, k) float64 features of every bar; rows before ``warmup_bars - 1`` are NaN."""
        return _batch(self.config, bars)

    def batch_frame(self, bars: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.batch(bars), index=bars.index, columns=self.names)

    def online(self) -> OnlineFeatures:
        return OnlineFeatures(self.config)

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def trend_feature(self) -> str:
        return self.names[-1]
