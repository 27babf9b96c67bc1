"""shared.feature_kernel: the feature bank's compiled pass (numba). Its rows are compared with
``OnlineFeatures`` bit for bit by tests/unit/test_feature_bank.py (every test there runs on both
paths); here, the two pieces the kernel's claim of the same bits rests on: its ``math.log`` is
libm's (CPython's), and its in-place re-sum is ``math.fsum``. Without numba (an install without
the ``fast`` extra) this module is skipped, visibly."""

from __future__ import annotations

import math

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="numba (the `fast` extra) is not installed")
from numba import njit  # noqa: E402

from shared import feature_kernel  # noqa: E402
from shared.feature_bank import ADOPT_MIN, FeatureBank  # noqa: E402
from shared.feature_config import FeatureConfig  # noqa: E402

pytestmark = pytest.mark.unit


def test_the_compiled_path_is_the_default_and_its_log_is_libm_log() -> None:
    """With numba installed a bank uses the kernel unless told not to; the kernel's
    ``math.log`` is the very function CPython's ``math.log`` calls (numpy's SIMD log is not:
    ~4 % of inputs differ in the last bit on this machine), on 300,000 inputs."""
    assert FeatureBank(FeatureConfig()).compiled is not None
    assert FeatureBank(FeatureConfig(), compiled=False).compiled is None

    @njit("void(f8[::1], f8[::1])")
    def logs(x: np.ndarray, out: np.ndarray) -> None:
        for i in range(x.shape[0]):
            out[i] = math.log(x[i])

    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            np.exp(rng.normal(0.0, 0.01, 100_000)),  # log returns of prices
            rng.uniform(0.5, 2.0, 100_000),  # ratios of stds
            np.exp(rng.uniform(-700.0, 700.0, 100_000)),  # the whole range
        ]
    )
    out = np.empty_like(x)
    logs(x, out)
    want = np.array([math.log(v) for v in x.tolist()])
    assert np.array_equal(out, want)


def test_the_kernels_fsum_is_math_fsum() -> None:
    """The kernel re-sums a window in place with CPython's fsum algorithm: the same bits as
    ``math.fsum`` on cancelling, wide-range and rounding-tie inputs; NaN (the bank then re-sums
    in Python) where ``math.fsum`` leaves the finite path."""
    fsum = feature_kernel._fsum
    rng = np.random.default_rng(3)
    cases = [
        [1e-16, 1.0, 1e16],  # the half-even correction across partials
        [1e100, 1.0, -1e100, 1e-100, -1.0],
        [0.1] * 10,
        [],
        [-0.0],
        *(rng.normal(0.0, 1.0, 20) * 10.0 ** rng.integers(-300, 300, 20) for _ in range(300)),
        *(np.concatenate([x := rng.normal(5.0, 1e-9, 10), -x + 1e-17]) for _ in range(100)),
        *(rng.uniform(1e3, 1e5, 60) for _ in range(100)),
    ]
    for values in cases:
        x = np.asarray(values, dtype=np.float64)
        partials = np.empty(len(x) + 2)
        assert np.array_equal(np.array([fsum(x, len(x), partials)]), [math.fsum(x.tolist())])
    huge = np.array([1.7e308, 1.7e308])  # math.fsum: "intermediate overflow"
    assert math.isnan(fsum(huge, 2, np.empty(4)))
    with pytest.raises(OverflowError):
        math.fsum(huge.tolist())


def test_a_stale_std_is_re_anchored_inside_the_kernel() -> None:
    """A regime change (a price level jump) makes a window's std stale: the rows kernel
    re-anchors it in place (``STALE_RESUMMED``), and the rows still equal ``OnlineFeatures``'."""
    from shared.features import OnlineFeatures

    config = FeatureConfig()
    bank = FeatureBank(config)
    k = ADOPT_MIN  # enough symbols to be banked
    handles = [bank.online() for _ in range(k)]
    refs = [OnlineFeatures(config) for _ in range(k)]
    resummed = 0
    real_rows = feature_kernel.rows_kernel

    def counting(*args: object) -> int:
        nonlocal resummed
        out = real_rows(*args)
        flags = args[6]
        assert isinstance(flags, np.ndarray)
        resummed += int((flags == feature_kernel.STALE_RESUMMED).sum())
        return int(out)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(feature_kernel, "rows_kernel", counting)
        for t in range(400):
            level = 100.0 if t < 200 else 1e6  # the jump: deviations from a stale anchor
            bar = (level, level * 1.001 + t % 3, level * 0.999, level + (t % 5) * 0.01, 1e3)
            got, errors = bank.update_batch(handles, [bar] * k)
            assert errors == [None] * k
            for row, ref in zip(got, refs, strict=True):
                want = ref.update(*bar)
                assert (row is None and want is None) or np.array_equal(row, want)
    assert handles[0].online is None  # banked: the kernel did the updates
    assert resummed > 0
