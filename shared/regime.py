"""Market-regime features: a Gaussian HMM's filtered state probabilities and a trend-vs-mean-
reversion indicator, computed online with no look-ahead (issue 15 item 3).

Why a numpy HMM and not ``hmmlearn``: the model is tiny (2-3 states, diagonal Gaussians on one or
two series), and a new compiled dependency would have to be pinned in ``pyproject.toml`` and built
into every Docker image offline. Baum-Welch (scaled forward-backward) and the forward filter are a
few dozen lines here, deterministic for a seed, and the fitted numbers travel in the model's
feature config so inference filters with exactly the numbers training used.

Observations (one row per bar t >= 1):

* ``r_t = log(close_t / close_{t-1})``;
* with ``use_vol``: also ``log(std(r_{t-vol_window+1..t}))`` (population std; floored).

Fit (``fit_regime``): Baum-Welch on the observations of the TRAINING bars only (a frame the caller
cuts before the validation slice), initialised from quantile bins of |r| (deterministic; ``seed``
only jitters the initial means by 1e-6 std, so equal seeds give equal numbers). States are then
ordered by the variance of r: state 0 is the calmest. ``start`` is the transition matrix's
stationary distribution.

Filtering: the feature at bar t is P(state_t | observations of the last ``filter_window`` bars up
to t), the forward recursion started from ``start`` at bar t - filter_window + 1. A trailing window
(not a filter running from the first bar ever seen) makes the value a function of a fixed number
of bars, so the live service, which warms a symbol from a snapshot of N bars, computes the same
numbers as a backtest over the whole history once N >= ``warmup`` (the HMM forgets its start
exponentially anyway; the window makes it exact). Nothing after bar t is read.

Trend vs mean reversion: ``ac1_<n>`` is the lag-1 autocorrelation of r over the last n returns
(> 0: moves persist, < 0: they revert); 0 when either leg has no variance.

Features (names): ``hmm_p<k>_<K>`` for k < K, then ``ac1_<n>``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = [
    "HmmParams",
    "OnlineRegime",
    "RegimeConfig",
    "baum_welch",
    "fit_regime",
    "fit_training_slices",
    "regime_batch",
    "regime_names",
    "regime_observations",
    "regime_warmup",
]

_VAR_FLOOR_REL = 1e-3  # each state's variance >= this fraction of the data's variance
_STD_FLOOR = 1e-12  # log(0) guard for the realised-vol observation


class HmmParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A fitted diagonal-Gaussian HMM: K states, D observation dims."""

    start: list[float]  # K: the stationary distribution (every filter window starts from it)
    transmat: list[list[float]]  # K x K, rows sum to 1
    means: list[list[float]]  # K x D
    variances: list[list[float]]  # K x D
    log_likelihood: float = 0.0  # of the training observations (reported, not used)
    iterations: int = 0
    fitted_rows: int = 0
    fit_slice: str = ""  # what it was fitted on (``fit_training_slices``: source, symbols, dates)


class RegimeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The regime block of ``shared.feature_config.FeatureConfig`` (off when that field is None)."""

    n_states: int = 2
    use_vol: bool = False
    vol_window: int = 20
    filter_window: int = 120
    autocorr_window: int = 60
    n_iter: int = 100
    tol: float = 1e-6
    seed: int = 0
    params: HmmParams | None = None  # None until ``fit_regime``; batch/online need it

    def __post_init__(self) -> None:
        if self.n_states not in (2, 3):
            raise ValueError("regime.n_states: must be 2 or 3")
        for name in ("vol_window", "filter_window", "autocorr_window"):
            if getattr(self, name) < 2:
                raise ValueError(f"regime.{name}: must be >= 2")
        if self.n_iter < 1:
            raise ValueError("regime.n_iter: must be >= 1")
        p = self.params
        if p is not None:
            k, d = self.n_states, self.n_dims
            shapes = (
                np.shape(p.start) == (k,)
                and np.shape(p.transmat) == (k, k)
                and np.shape(p.means) == (k, d)
                and np.shape(p.variances) == (k, d)
            )
            if not shapes:
                raise ValueError(f"regime.params: shapes do not match {k} states x {d} dims")
            if not (np.all(np.asarray(p.variances) > 0) and np.all(np.isfinite(p.means))):
                raise ValueError("regime.params: variances must be > 0 and means finite")

    @property
    def n_dims(self) -> int:
        return 2 if self.use_vol else 1


def regime_names(cfg: RegimeConfig) -> list[str]:
    k = cfg.n_states
    return [*(f"hmm_p{i}_{k}" for i in range(k)), f"ac1_{cfg.autocorr_window}"]


def _obs_warmup(cfg: RegimeConfig) -> int:
    """Bars before the first complete observation row (index = this)."""
    return cfg.vol_window if cfg.use_vol else 1


def regime_warmup(cfg: RegimeConfig) -> int:
    """Bars needed before the first complete regime row (that row is index warmup - 1)."""
    return max(_obs_warmup(cfg) + cfg.filter_window, cfg.autocorr_window + 2)


# ------------------------------------------------------------------------------ observations


def regime_observations(cfg: RegimeConfig, close: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n, D) observation rows; NaN before ``_obs_warmup``."""
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    r = np.full(n, np.nan)
    r[1:] = np.log(c[1:] / c[:-1])
    if not cfg.use_vol:
        return r[:, None]
    w = cfg.vol_window
    lv = np.full(n, np.nan)
    if n > w:
        win = np.lib.stride_tricks.sliding_window_view(r[1:], w)
        lv[w:] = np.log(np.maximum(_window_std(win), _STD_FLOOR))
    return np.column_stack([r, lv])


def _window_std(win: NDArray[np.float64]) -> NDArray[np.float64]:
    """Population std of each row (two-pass; the online side calls it on one row)."""
    m = win.mean(axis=-1, keepdims=True)
    d = win - m
    return np.asarray(np.sqrt((d * d).mean(axis=-1)))


def _autocorr(win: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lag-1 autocorrelation of each row of returns (n + 1 values: pairs (x[i], x[i+1]))."""
    a = win[..., :-1]
    b = win[..., 1:]
    da = a - a.mean(axis=-1, keepdims=True)
    db = b - b.mean(axis=-1, keepdims=True)
    num = (da * db).sum(axis=-1)
    den = np.sqrt((da * da).sum(axis=-1) * (db * db).sum(axis=-1))
    ok = den > 1e-300
    out = np.zeros(np.shape(num))
    np.divide(num, den, out=out, where=ok)
    return out


# ------------------------------------------------------------------------------ HMM


def _log_emission(
    x: NDArray[np.float64], means: NDArray[np.float64], var: NDArray[np.float64]
) -> NDArray[np.float64]:
    """log N(x | mean_k, diag var_k) for rows x (..., D) -> (..., K)."""
    d = x[..., None, :] - means
    return np.asarray(-0.5 * (np.log(2.0 * math.pi * var) + d * d / var).sum(axis=-1))


def _emission(
    x: NDArray[np.float64], means: NDArray[np.float64], var: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Emission likelihoods scaled per row by the row's max (the scale cancels in a filter)."""
    lb = _log_emission(x, means, var)
    return np.asarray(np.exp(lb - lb.max(axis=-1, keepdims=True)))


def _stationary(a: NDArray[np.float64]) -> NDArray[np.float64]:
    k = len(a)
    # solve pi (A - I) = 0 with sum(pi) = 1 (least squares on the stacked system)
    m = np.vstack([a.T - np.eye(k), np.ones((1, k))])
    rhs = np.zeros(k + 1)
    rhs[-1] = 1.0
    pi = np.linalg.lstsq(m, rhs, rcond=None)[0]
    pi = np.clip(pi, 1e-12, None)
    return np.asarray(pi / pi.sum())


def baum_welch(
    x: NDArray[np.float64], n_states: int, *, n_iter: int, tol: float, seed: int
) -> HmmParams:
    """Fit a diagonal-Gaussian HMM to rows ``x`` (T, D) by EM (scaled forward-backward)."""
    x = np.asarray(x, dtype=np.float64)
    t_len = x.shape[0]
    k = n_states
    if t_len < 10 * k:
        raise ValueError(f"regime fit: {t_len} observations are too few for {k} states")
    rng = np.random.default_rng(seed)
    total_var = x.var(axis=0)
    floor = _VAR_FLOOR_REL * np.where(total_var > 0, total_var, 1.0)
    # init: quantile bins of |r| (calm .. wild), each bin's mean and variance
    order = np.argsort(np.abs(x[:, 0]), kind="stable")
    bins = np.array_split(order, k)
    means = np.array([x[b].mean(axis=0) for b in bins])
    var = np.array([np.maximum(x[b].var(axis=0), floor) for b in bins])
    means = means + 1e-6 * np.sqrt(total_var) * rng.standard_normal(means.shape)
    a = np.full((k, k), 0.05 / max(k - 1, 1))
    np.fill_diagonal(a, 0.95)
    pi = np.full(k, 1.0 / k)
    prev_ll = -math.inf
    ll = -math.inf
    iterations = 0
    while iterations < n_iter:
        iterations += 1
        lb = _log_emission(x, means, var)
        shift = lb.max(axis=1, keepdims=True)
        b = np.exp(lb - shift)
        alpha = np.empty((t_len, k))
        scale = np.empty(t_len)
        p = pi * b[0]
        scale[0] = p.sum()
        alpha[0] = p / scale[0]
        for t in range(1, t_len):
            p = (alpha[t - 1] @ a) * b[t]
            scale[t] = p.sum()
            alpha[t] = p / scale[t]
        beta = np.empty((t_len, k))
        beta[-1] = 1.0
        for t in range(t_len - 2, -1, -1):
            beta[t] = (a @ (b[t + 1] * beta[t + 1])) / scale[t + 1]
        ll = float(np.log(scale).sum() + shift.sum())
        gamma = alpha * beta
        gamma /= gamma.sum(axis=1, keepdims=True)
        xi = (
            alpha[:-1, :, None] * a[None] * (b[1:] * beta[1:])[:, None, :] / scale[1:, None, None]
        ).sum(axis=0)
        pi = gamma[0]
        a = xi / xi.sum(axis=1, keepdims=True)
        w = gamma.sum(axis=0)
        means = (gamma.T @ x) / w[:, None]
        dev = x[None, :, :] - means[:, None, :]
        var = np.maximum((gamma.T[:, :, None] * dev * dev).sum(axis=1) / w[:, None], floor)
        if ll - prev_ll < tol * max(1.0, abs(ll)):
            break
        prev_ll = ll
    rank = np.argsort(var[:, 0], kind="stable")  # state 0 = the calmest
    a = a[np.ix_(rank, rank)]
    return HmmParams(
        start=_stationary(a).tolist(),
        transmat=a.tolist(),
        means=means[rank].tolist(),
        variances=var[rank].tolist(),
        log_likelihood=ll,
        iterations=iterations,
        fitted_rows=t_len,
    )


def fit_regime(
    cfg: RegimeConfig, bars: pd.DataFrame | list[pd.DataFrame], fit_slice: str = ""
) -> RegimeConfig:
    """``cfg`` with ``params`` fitted on ``bars`` (the TRAINING slice only: cut it before).

    Several frames (one per symbol) are pooled: their observation rows are concatenated, so the
    one transition at each junction is counted as an ordinary step (negligible against
    thousands of rows)."""
    frames = bars if isinstance(bars, list) else [bars]
    rows = [regime_observations(cfg, f["close"].to_numpy(np.float64)) for f in frames]
    x = np.concatenate(rows)
    x = x[~np.isnan(x).any(axis=1)]
    params = baum_welch(x, cfg.n_states, n_iter=cfg.n_iter, tol=cfg.tol, seed=cfg.seed)
    params = msgspec.structs.replace(params, fit_slice=fit_slice)
    return msgspec.structs.replace(cfg, params=params)


def fit_training_slices(
    regime: dict[str, Any],
    source: str,
    symbols: list[str],
    start: str | None,
    end: str | None,
) -> dict[str, Any]:
    """The trainer's regime block fitted on every symbol's bars in [start, end) (the training
    slice), as a plain dict for ``FeatureConfig``; kept as is when it already was fitted on
    exactly that slice (``params.fit_slice``)."""
    from shared.data import load_bars

    key = f"{source} {','.join(symbols)} [{start}, {end})"
    cfg = msgspec.convert(regime, RegimeConfig)
    if cfg.params is not None and cfg.params.fit_slice == key:
        return regime
    frames = []
    for symbol in symbols:
        bars = load_bars(source, symbol)
        ts = pd.DatetimeIndex(bars.index)
        keep = np.ones(len(bars), dtype=bool)
        if start is not None:
            keep &= ts >= _utc(start)
        if end is not None:
            keep &= ts < _utc(end)
        frames.append(bars[keep])
    out: dict[str, Any] = msgspec.to_builtins(fit_regime(cfg, frames, fit_slice=key))
    return out


def _utc(value: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _arrays(cfg: RegimeConfig) -> tuple[NDArray[np.float64], ...]:
    p = cfg.params
    if p is None:
        raise ValueError("regime block is not fitted: call shared.regime.fit_regime first")
    return (
        np.asarray(p.start, dtype=np.float64),
        np.asarray(p.transmat, dtype=np.float64),
        np.asarray(p.means, dtype=np.float64),
        np.asarray(p.variances, dtype=np.float64),
    )


def _filter_windows(
    b: NDArray[np.float64], start: NDArray[np.float64], a: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Filtered probabilities at the last row of each window: b is (..., W, K) emissions."""
    p = start * b[..., 0, :]
    p = p / p.sum(axis=-1, keepdims=True)
    for i in range(1, b.shape[-2]):
        p = (p @ a) * b[..., i, :]
        p = p / p.sum(axis=-1, keepdims=True)
    return p


def regime_batch(cfg: RegimeConfig, bars: pd.DataFrame) -> NDArray[np.float64]:
    """(n, K + 1) regime features of every bar; rows before ``regime_warmup - 1`` are NaN."""
    start, a, means, var = _arrays(cfg)
    close = bars["close"].to_numpy(np.float64)
    n = len(close)
    out = np.full((n, cfg.n_states + 1), np.nan)
    x = regime_observations(cfg, close)
    o0, w = _obs_warmup(cfg), cfg.filter_window
    if n - o0 >= w:
        b = _emission(x[o0:], means, var)  # (n - o0, K)
        windows = np.lib.stride_tricks.sliding_window_view(b, w, axis=0)  # (m, K, W)
        out[o0 + w - 1 :, : cfg.n_states] = _filter_windows(np.swapaxes(windows, -1, -2), start, a)
    m = cfg.autocorr_window
    if n >= m + 2:
        r = x[1:, 0]
        out[m + 1 :, -1] = _autocorr(np.lib.stride_tricks.sliding_window_view(r, m + 1))
    out[: regime_warmup(cfg) - 1] = np.nan
    return out


class _SlidingProduct:
    """Product of the matrices in a FIFO window, O(1) amortised per push/pop (two stacks).

    Every partial product is rescaled by its largest entry: only the direction matters (the
    filter normalises at the end), and ~100 emission-weighted factors would otherwise
    underflow."""

    def __init__(self) -> None:
        self._front: list[NDArray[np.float64]] = []  # suffix products, oldest last
        self._back: list[NDArray[np.float64]] = []
        self._back_prod: NDArray[np.float64] | None = None

    @staticmethod
    def _scaled(m: NDArray[np.float64]) -> NDArray[np.float64]:
        return m / m.max()

    def push(self, m: NDArray[np.float64]) -> None:
        self._back.append(m)
        bp = self._back_prod
        self._back_prod = m if bp is None else self._scaled(bp @ m)

    def pop(self) -> None:
        if not self._front:
            acc: NDArray[np.float64] | None = None
            for m in reversed(self._back):
                acc = m if acc is None else self._scaled(m @ acc)
                self._front.append(acc)
            self._back = []
            self._back_prod = None
        self._front.pop()

    def product(self) -> NDArray[np.float64] | None:
        f = self._front[-1] if self._front else None
        b = self._back_prod
        if f is None or b is None:
            return f if b is None else b
        return f @ b


class OnlineRegime:
    """Bar-by-bar twin of ``regime_batch``: ``update(close)`` -> row or None while warming up.

    The window filter ``(start * b_s) A diag(b_s+1) ... A diag(b_t)`` is kept as a sliding
    product of the ``A diag(b_i)`` factors, so a bar costs O(1) small matrix products instead
    of re-running ``filter_window`` steps (the same numbers to float rounding, tested to 1e-9).
    """

    def __init__(self, cfg: RegimeConfig) -> None:
        self.cfg = cfg
        self._start, self._a, self._means, self._var = _arrays(cfg)
        self.warmup = regime_warmup(cfg)
        self.bars_seen = 0
        self._prev = math.nan
        self._returns: deque[float] = deque(maxlen=max(cfg.vol_window, cfg.autocorr_window + 1))
        self._emissions: deque[NDArray[np.float64]] = deque(maxlen=cfg.filter_window)
        self._window = _SlidingProduct()  # A diag(b_i) of every emission but the oldest

    def update(self, close: float) -> NDArray[np.float64] | None:
        cfg = self.cfg
        close = float(close)
        if self.bars_seen > 0:
            r = math.log(close / self._prev)
            self._returns.append(r)
            row: list[float] | None = [r]
            if cfg.use_vol:
                if len(self._returns) >= cfg.vol_window:
                    win = np.asarray(list(self._returns)[-cfg.vol_window :])
                    assert row is not None
                    row.append(math.log(max(float(_window_std(win)), _STD_FLOOR)))
                else:
                    row = None
            if row is not None:
                x = np.asarray(row, dtype=np.float64)
                b = _emission(x, self._means, self._var)
                if self._emissions:
                    self._window.push(self._a * b)  # A @ diag(b): column j scaled by b_j
                if len(self._emissions) == self.cfg.filter_window:
                    self._window.pop()  # the next-oldest emission becomes the window's start
                self._emissions.append(b)
        self._prev = close
        self.bars_seen += 1
        if self.bars_seen < self.warmup:
            return None
        p = self._start * self._emissions[0]
        prod = self._window.product()
        if prod is not None:
            p = p @ prod
        probs = p / p.sum()
        m = cfg.autocorr_window
        ac = _autocorr(np.asarray(list(self._returns)[-(m + 1) :]))
        return np.asarray([*probs.tolist(), float(ac)], dtype=np.float64)


def regime_config_from(data: Any) -> RegimeConfig:
    """A ``RegimeConfig`` from a plain dict (manifest / CLI)."""
    return msgspec.convert(data, RegimeConfig)
