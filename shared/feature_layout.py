"""The layout of the feature bank's state matrix, defined once: both the bank's numpy pass
(``shared.feature_bank``) and the compiled kernel (``shared.feature_kernel``) index it.

``state`` has one column per slot (a banked symbol) and ``N_FIELDS`` rows: first the nine
scalars of ``OnlineFeatures`` (bars seen, the closes' ring index, the previous close, the four
EWMs, MACD's signal, ATR), then six window fields (ring position, count, pushes since the last
exact re-sum, anchor, sum and sum of squares of the deviations from the anchor), each a block of
``N_WINDOWS`` rows, one per rolling window in the order of ``WINDOWS``. ``POS`` ... ``SUM2``
are the first rows of those blocks (the kernel adds the window's index; ``window_rows`` gives
the numpy pass a block as a slice). The values are plain ints: numba reads them as compile-time
constants.
"""

from __future__ import annotations

# the scalar rows
SEEN, CI, PREV, RSI_UP, RSI_DN, EMA_FAST, EMA_SLOW, SIG, ATR = range(9)
N_SCALARS = 9
# ``OnlineFeatures``' rolling windows (its attribute names), in the order of their rows
WINDOWS = ("_bb", "_vol", "_rv_s", "_rv_l", "_sma_f", "_sma_s")
N_WINDOWS = len(WINDOWS)
STD_WINDOWS = 4  # bb, vol, rv_s, rv_l: the windows whose std is read (not the two SMAs)
# the first row of each window field's block
POS, COUNT, SINCE, ANCHOR, SUM, SUM2 = (N_SCALARS + k * N_WINDOWS for k in range(6))
N_FIELDS = N_SCALARS + 6 * N_WINDOWS  # the state's rows


def window_rows(start: int) -> slice:
    """The block of a window field (``POS`` ... ``SUM2``): its rows of every window."""
    return slice(start, start + N_WINDOWS)
