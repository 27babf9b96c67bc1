"""Stock contract definitions: resolving what a client asks for, with IB's real conIds where known.

A symbol outside the universe (configured symbols plus any symbol seen on the price source) has no
security definition, which IB answers with error 200.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterable

from ibsim.models import ContractQuery, StockContract

# Real IB conIds, primary exchanges and names for well-known symbols, so logs look familiar.
KNOWN_STOCKS: dict[str, tuple[int, str, str, str]] = {
    "AAPL": (265598, "NASDAQ", "APPLE INC", "COMMON"),
    "MSFT": (272093, "NASDAQ", "MICROSOFT CORP", "COMMON"),
    "IBM": (8314, "NYSE", "INTL BUSINESS MACHINES CORP", "COMMON"),
    "AMZN": (3691937, "NASDAQ", "AMAZON.COM INC", "COMMON"),
    "GOOG": (208813720, "NASDAQ", "ALPHABET INC-CL C", "COMMON"),
    "GOOGL": (208813719, "NASDAQ", "ALPHABET INC-CL A", "COMMON"),
    "META": (107113386, "NASDAQ", "META PLATFORMS INC-CLASS A", "COMMON"),
    "NFLX": (15124833, "NASDAQ", "NETFLIX INC", "COMMON"),
    "NVDA": (4815747, "NASDAQ", "NVIDIA CORP", "COMMON"),
    "SPY": (756733, "ARCA", "SPDR S&P 500 ETF TRUST", "ETF"),
    "QQQ": (320227571, "NASDAQ", "INVESCO QQQ TRUST SERIES 1", "ETF"),
}
STOCK_EXCHANGES = frozenset({"", "SMART", "NASDAQ", "ISLAND", "NYSE", "ARCA", "BATS", "IEX"})
VALID_EXCHANGES = "SMART,NASDAQ,NYSE,ARCA,BATS,IEX,ISLAND"
ORDER_TYPES = "LMT,MKT,STP,ACTIVETIM,AD,ALLOC,DAY,GTC,IOC,OCA,WHATIF"


def synthetic_con_id(symbol: str) -> int:
    """Stable across runs and machines (crc32, not hash()), in a range real conIds rarely use."""
    return 900_000_000 + zlib.crc32(symbol.encode()) % 90_000_000


class ContractRegistry:
    """The simulator's security master for US stocks on SMART routing in USD."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_symbol: dict[str, StockContract] = {}
        self._by_con_id: dict[int, StockContract] = {}
        for symbol in symbols:
            self.add(symbol)

    def add(self, symbol: str) -> StockContract:
        symbol = symbol.upper()
        existing = self._by_symbol.get(symbol)
        if existing is not None:
            return existing
        con_id, primary, name, stock_type = KNOWN_STOCKS.get(
            symbol, (synthetic_con_id(symbol), "NASDAQ", symbol, "COMMON")
        )
        contract = StockContract(con_id, symbol, primary, name, stock_type)
        self._by_symbol[symbol] = contract
        self._by_con_id.setdefault(con_id, contract)
        return contract

    def get(self, symbol: str) -> StockContract | None:
        return self._by_symbol.get(symbol.upper())

    def resolve(self, query: ContractQuery) -> StockContract | None:
        """The one stock the query names, or None (IB: error 200, no security definition)."""
        if query.con_id:
            contract = self._by_con_id.get(query.con_id)
            if contract is None or (query.symbol and query.symbol.upper() != contract.symbol):
                return None
        else:
            symbol = (query.symbol or query.local_symbol).upper()
            contract = self._by_symbol.get(symbol)
            if contract is None:
                return None
        if query.sec_type not in ("", "STK") or query.currency not in ("", "USD"):
            return None
        if query.exchange.upper() not in STOCK_EXCHANGES:
            return None
        if query.last_trade_date or query.right or (query.strike or 0.0) != 0.0:
            return None  # stocks have no expiry, right or strike
        return contract

    def __contains__(self, symbol: str) -> bool:
        return symbol.upper() in self._by_symbol


def trading_hours(today: dt.date, days: int = 7) -> tuple[str, str]:
    """IB-style (tradingHours, liquidHours) for US stocks, US/Eastern, weekends closed.

    Exchange holidays are not modelled.
    """
    trading: list[str] = []
    liquid: list[str] = []
    for offset in range(days):
        day = today + dt.timedelta(days=offset)
        stamp = day.strftime("%Y%m%d")
        if day.weekday() >= 5:
            trading.append(f"{stamp}:CLOSED")
            liquid.append(f"{stamp}:CLOSED")
        else:
            trading.append(f"{stamp}:0400-{stamp}:2000")
            liquid.append(f"{stamp}:0930-{stamp}:1600")
    return ";".join(trading), ";".join(liquid)
