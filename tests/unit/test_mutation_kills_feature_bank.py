"""shared.feature_bank: tests written against mutants that survived its first mutmut run
(scripts/mutate.py). Each feeds banked symbols series built by hand so that a degenerate branch
of ``OnlineFeatures.update`` decides the row: a constant close (RSI with no move up or down:
100), a Bollinger band whose relative width sits just inside or outside the zero-width cut-off
(std <= 1e-9 |mean|: %B 0.5) and a volume std just inside or outside its own cut-off (volume z
0.0). The expected values follow from those rules; every row is also compared bit for bit with
``OnlineFeatures`` (the reference the bank promises to equal).
"""

from __future__ import annotations

import numpy as np
import pytest

import shared.feature_bank as bank_mod
from shared.feature_bank import FeatureBank, update_features
from shared.features import FeaturePipeline, OnlineFeatures

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("bank_path")]

Bar5 = tuple[float, float, float, float, float]
BARS = 160  # past the default pipeline's warm-up (101 bars)


@pytest.fixture(autouse=True)
def small_adoption_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four symbols are banked and stay in (a batch of at most two would leave the bank)."""
    monkeypatch.setattr(bank_mod, "ADOPT_MIN", 4)
    monkeypatch.setattr(bank_mod, "LEAVE_MAX", 2)


def flat_bar(close: float, volume: float = 10.0) -> Bar5:
    return (close, close, close, close, volume)


def alternating(level: float, rel_step: float, n: int = BARS) -> list[Bar5]:
    """Closes alternating between level and level * (1 + rel_step): over an even window the
    population std is level * rel_step / 2 around a mean of ~level."""
    return [flat_bar(level * (1.0 + rel_step) if t % 2 else level) for t in range(n)]


def banked_rows(series: list[list[Bar5]]) -> list[np.ndarray]:
    """Every symbol through one bank (one batch per step) and through its own OnlineFeatures:
    each step's rows must be equal bit for bit; the last rows of the bank."""
    pipeline = FeaturePipeline()
    bank = FeatureBank(pipeline.config)
    handles = [bank.online() for _ in series]
    refs = [OnlineFeatures(pipeline.config) for _ in series]
    last: list[np.ndarray] = []
    for t in range(len(series[0])):
        bars = [s[t] for s in series]
        rows, errors = update_features(handles, bars)
        assert errors == [None] * len(series)
        want = [ref.update(*bar) for ref, bar in zip(refs, bars, strict=True)]
        for got, expected in zip(rows, want, strict=True):
            assert (got is None) == (expected is None)
            if got is not None:
                assert np.array_equal(got, expected, equal_nan=False), (t, got, expected)
        last = [r for r in rows if r is not None]
    assert all(h.online is None for h in handles)  # they were banked
    return last


def column(prefix: str) -> int:
    return next(i for i, n in enumerate(FeaturePipeline().names) if n.startswith(prefix))


def test_a_constant_close_has_no_move_either_way_and_an_rsi_of_100() -> None:
    rows = banked_rows([[flat_bar(100.0)] * BARS for _ in range(4)])
    for row in rows:
        assert row[column("rsi")] == 100.0  # no loss at all: 100, not 0 / 0
        assert row[column("bb_pos")] == 0.5  # zero width
        assert row[column("ret_1")] == 0.0


def test_the_zero_width_band_cut_off_is_std_at_most_1e_9_of_the_mean() -> None:
    # relative std 0.8e-9 (zero width: 0.5) and 1.25e-9 (a real band: the close sits at
    # mean +- std, so %B is 0.5 +- 1 / (2 * 2 dev) = 0.25 or 0.75)
    inside = alternating(100.0, 1.6e-9)
    outside = alternating(100.0, 2.5e-9)
    rows = banked_rows([inside, outside, inside, outside])
    bb = column("bb_pos")
    assert rows[0][bb] == 0.5 and rows[2][bb] == 0.5
    for row in (rows[1], rows[3]):
        assert min(abs(row[bb] - 0.25), abs(row[bb] - 0.75)) < 1e-3


def test_the_volume_z_cut_off_is_std_above_1e_9_of_the_mean_volume() -> None:
    # volume std 1e-9 around 10 (relative 1e-10: no spread, z = 0.0) and around 0.01
    # (relative 1e-7: a spread, z = +-1 for alternating volumes)
    closes = [100.0 + 0.5 * ((t * 7) % 5) for t in range(BARS)]
    big = [flat_bar(c, 10.0 + (2e-9 if t % 2 else 0.0)) for t, c in enumerate(closes)]
    small = [flat_bar(c, 0.01 + (2e-9 if t % 2 else 0.0)) for t, c in enumerate(closes)]
    rows = banked_rows([big, small, big, small])
    vz = column("volz")
    assert rows[0][vz] == 0.0 and rows[2][vz] == 0.0
    for row in (rows[1], rows[3]):
        assert abs(abs(row[vz]) - 1.0) < 1e-3


def test_a_handle_of_another_bank_is_refused_by_name() -> None:
    config = FeaturePipeline().config
    mine, other = FeatureBank(config), FeatureBank(config)
    with pytest.raises(ValueError) as refused:
        mine.update_batch([other.online()], [flat_bar(100.0)])
    assert str(refused.value) == "a handle of another bank"


def test_a_batch_of_exactly_leave_max_banked_symbols_leaves_the_bank() -> None:
    bank = FeatureBank(FeaturePipeline().config)
    handles = [bank.online() for _ in range(4)]
    update_features(handles, [flat_bar(100.0 + k) for k in range(4)])  # four: adopted
    assert all(h.online is None for h in handles)
    update_features(handles[:2], [flat_bar(101.0), flat_bar(102.0)])  # LEAVE_MAX (2): out
    assert handles[0].online is not None and handles[1].online is not None
    assert handles[2].online is None and handles[3].online is None


def test_plain_and_banked_features_mixed_in_either_order_refuse_as_the_reference() -> None:
    """A plain ``OnlineFeatures`` first or last, one banked symbol in its bank's group, and a
    refused bar on each kind: every row and refusal text as ``OnlineFeatures`` gives them."""
    config = FeaturePipeline().config
    bank = FeatureBank(config)
    banked = [bank.online() for _ in range(4)]
    banked_ref = [OnlineFeatures(config) for _ in range(4)]
    plain, plain_ref = OnlineFeatures(config), OnlineFeatures(config)
    bad: Bar5 = (100.0, 99.0, 101.0, 100.0, 10.0)  # low above high: refused
    steps: list[tuple[list[int], list[Bar5]]] = [
        ([0, 1, 2, 3], [flat_bar(100.0 + k) for k in range(4)]),  # adopted
        ([-1, 0], [bad, bad]),  # plain first: both refused
        ([1, -1], [bad, flat_bar(100.0)]),  # banked first: the banked one refused
        ([-1, 2], [flat_bar(101.0), flat_bar(103.0)]),
    ]
    for who, bars in steps:
        feats = [plain if k < 0 else banked[k] for k in who]
        refs = [plain_ref if k < 0 else banked_ref[k] for k in who]
        rows, errors = update_features(feats, bars)
        for ref, bar, row, error in zip(refs, bars, rows, errors, strict=True):
            try:
                want = ref.update(*bar)
            except ValueError as exc:
                assert error == str(exc) and error.startswith("invalid bar") and row is None
            else:
                assert error is None and (row is None) == (want is None)


def test_asking_for_the_compiled_pass_without_numba_is_refused_by_name(bank_path: str) -> None:
    """``compiled=True`` gets the kernel where numba is installed, and a ValueError naming
    what is missing where it is not (the numpy run plays an install without numba)."""
    config = FeaturePipeline().config
    if bank_path == "compiled":
        assert FeatureBank(config, compiled=True).compiled is not None
        assert FeatureBank(config).compiled is not None  # the default where numba imports
    else:
        with pytest.raises(ValueError, match=r"^compiled=True needs numba \(pip install "):
            FeatureBank(config, compiled=True)
        assert FeatureBank(config).compiled is None
    assert FeatureBank(config, compiled=False).compiled is None
