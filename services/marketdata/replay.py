"""A replayable series of real bars for one symbol, as bus ``Bar`` messages.

Each bar's ``seq`` is its 1-based position in the loaded series, so the same bar always has the
same number: downstream order references built from it stay stable across restarts and replays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.data import load_bars
from shared.messages import Bar

_BAR_LENGTH = {"30m": pd.Timedelta(minutes=30), "1h": pd.Timedelta(hours=1)}
_DAILY_SESSION = pd.Timedelta(hours=6, minutes=30)  # 09:30 -> 16:00 New York


def bar_length(timeframe: str) -> pd.Timedelta:
    return _BAR_LENGTH.get(timeframe, _DAILY_SESSION)


@dataclass
class SymbolSeries:
    symbol: str
    timeframe: str
    close_ts: np.ndarray  # int64 ns, bar close
    ohlcv: np.ndarray  # float64 (n, 5)
    first_live: int  # index of the first bar the replay publishes

    @classmethod
    def load(cls, source: str, symbol: str, replay_start: str, replay_end: str) -> SymbolSeries:
        return cls.from_frame(load_bars(source, symbol), source, symbol, replay_start, replay_end)

    @classmethod
    def from_frame(
        cls, df: pd.DataFrame, source: str, symbol: str, replay_start: str, replay_end: str
    ) -> SymbolSeries:
        """A series from any loader's frame (close-time UTC index, OHLCV columns)."""
        if replay_end:
            df = df[df.index < pd.Timestamp(replay_end, tz="UTC")]
        first_live = int(np.searchsorted(df.index, pd.Timestamp(replay_start, tz="UTC")))
        if first_live >= len(df):
            raise ValueError(f"{source}/{symbol}: no bars after replay_start={replay_start}")
        close_ts = df.index.as_unit("ns").asi8.copy()
        ohlcv = df[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
        return cls(symbol, str(df.attrs.get("timeframe", "1d")), close_ts, ohlcv, first_live)

    def __len__(self) -> int:
        return len(self.close_ts)

    def bar(self, index: int) -> Bar:
        o, h, lo, c, v = (float(x) for x in self.ohlcv[index])
        close_ts = int(self.close_ts[index])
        return Bar(
            symbol=self.symbol,
            timeframe=self.timeframe,
            bar_open_ts=close_ts - bar_length(self.timeframe).value,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
            ts_event=close_ts,
            seq=index + 1,
        )
