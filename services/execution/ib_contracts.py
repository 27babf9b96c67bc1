"""The qualified IB stock contracts of the traded symbols, asked for once per symbol."""

from __future__ import annotations

import logging

from ib_async import IB, Contract, Stock

from execution.broker import BrokerError
from shared.logs import event

log = logging.getLogger("execution.ib")  # the adapter's logger: its events read as one stream


class StockContracts:
    """Stocks on one exchange and currency, qualified by IB (``conId`` set) and kept."""

    def __init__(self, ib: IB, exchange: str, currency: str) -> None:
        self.ib = ib
        self.exchange = exchange
        self.currency = currency
        self._contracts: dict[str, Contract] = {}

    async def qualify(self, symbols: tuple[str, ...] | list[str]) -> None:
        """Ask IB for the symbols not qualified yet; one IB does not know is logged, not kept."""
        missing = [s for s in symbols if s not in self._contracts]
        if not missing:
            return
        contracts = [Stock(s, self.exchange, self.currency) for s in missing]
        try:
            results = await self.ib.qualifyContractsAsync(*contracts)
        except (ConnectionError, OSError) as exc:
            raise BrokerError(f"contract qualification failed: {exc!r}") from None
        for symbol, contract in zip(missing, results, strict=True):
            if isinstance(contract, Contract) and contract.conId:
                self._contracts[symbol] = contract
            else:
                event(log, "contract_not_found", logging.ERROR, symbol=symbol)

    async def get(self, symbol: str) -> Contract:
        if symbol not in self._contracts:
            await self.qualify([symbol])
        contract = self._contracts.get(symbol)
        if contract is None:
            raise BrokerError(
                f"IB has no unique stock contract for {symbol!r} on {self.exchange}/{self.currency}"
            )
        return contract
