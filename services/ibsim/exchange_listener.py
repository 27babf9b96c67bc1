"""What the simulated exchange reports (``ibsim.exchange``): the server (``ibsim.server``) turns
each call into API messages for the right client."""

from __future__ import annotations

from typing import Protocol

from ibsim.models import ExecutionRecord, SimOrder, SourceBar


class ExchangeListener(Protocol):
    """What the exchange reports; the server turns each call into API messages."""

    def order_changed(self, order: SimOrder, open_order: bool) -> None:
        """Status (and with ``open_order`` the order's terms) changed: openOrder/orderStatus."""

    def request_error(self, client_id: int, req_id: int, code: int, text: str) -> None:
        """An error message about an order or request of one client."""

    def executed(self, order: SimOrder, record: ExecutionRecord) -> None:
        """A fill: execDetails, orderStatus, commissionReport to the order's client."""

    def portfolio_changed(self, symbol: str, traded: bool) -> None:
        """A fill (``traded``) or a new mark changed ``symbol``'s position value and the account."""

    def bar_added(self, bar: SourceBar) -> None:
        """A new bar: historical keepUpToDate and real-time bar subscribers."""


class NullListener:
    def order_changed(self, order: SimOrder, open_order: bool) -> None:
        pass

    def request_error(self, client_id: int, req_id: int, code: int, text: str) -> None:
        pass

    def executed(self, order: SimOrder, record: ExecutionRecord) -> None:
        pass

    def portfolio_changed(self, symbol: str, traded: bool) -> None:
        pass

    def bar_added(self, bar: SourceBar) -> None:
        pass
