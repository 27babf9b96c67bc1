"""The simulator's account requests (positions, account updates, account summary) and the
pushes to the clients that subscribed to them when the portfolio changes."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from ibsim import encoders as enc
from ibsim.requests import parse_req_id
from ibsim.wire import FieldReader

if TYPE_CHECKING:
    from ibsim.server import IbServer
    from ibsim.session import ClientSession


class AccountRequests:
    """Answers account requests from the server's exchange; subscriptions live in the session."""

    def __init__(self, server: IbServer) -> None:
        self.server = server

    def positions(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.positions = True
        for contract, state in self.server.exchange.open_positions():
            session.send(enc.position(self.server.account, contract, state))
        session.send(enc.position_end())

    def cancel_positions(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.positions = False

    def account_updates(self, session: ClientSession, fields: list[str]) -> None:
        reader = FieldReader(fields, 2)
        subscribe = reader.flag()
        session.subs.account_updates = subscribe
        if not subscribe:
            return
        self._send_account_values(session)
        for contract, state in self.server.exchange.open_positions():
            session.send(
                enc.portfolio_value(
                    self.server.account, contract, state, self.server.exchange.mark(contract.symbol)
                )
            )
        session.send(enc.account_update_time(dt.datetime.now(dt.UTC)))
        session.send(enc.account_download_end(self.server.account))

    def _send_account_values(self, session: ClientSession) -> None:
        snapshot = self.server.exchange.account_snapshot()
        for tag, value, currency in enc.account_value_items(snapshot, self.server.account):
            session.send(enc.account_value(tag, value, currency, self.server.account))

    def _send_account_multi(self, session: ClientSession, req_id: int) -> None:
        snapshot = self.server.exchange.account_snapshot()
        for tag, value, currency in enc.account_value_items(snapshot, self.server.account):
            session.send(
                enc.account_update_multi(req_id, self.server.account, tag, value, currency)
            )

    def account_updates_multi(self, session: ClientSession, fields: list[str]) -> None:
        req_id = parse_req_id(fields)
        session.subs.account_multi.add(req_id)
        self._send_account_multi(session, req_id)
        session.send(enc.account_update_multi_end(req_id))

    def cancel_account_updates_multi(self, session: ClientSession, fields: list[str]) -> None:
        session.subs.account_multi.discard(parse_req_id(fields))

    def account_summary(self, session: ClientSession, fields: list[str]) -> None:
        reader = FieldReader(fields, 2)
        req_id = reader.integer()
        reader.skip(1)  # group name ("All")
        wanted = {t.strip() for t in reader.text().split(",") if t.strip()}
        snapshot = self.server.exchange.account_snapshot()
        for tag, value, currency in enc.account_value_items(snapshot, self.server.account):
            if currency == "BASE" or (wanted and tag not in wanted):
                continue
            session.send(enc.account_summary(req_id, self.server.account, tag, value, currency))
        session.send(enc.account_summary_end(req_id))

    def portfolio_changed(self, symbol: str, traded: bool) -> None:
        """Positions change only on fills; marks on every bar. Account values go out at once
        after a fill and at most every ``account_update_interval_s`` otherwise (IB itself sends
        them every few minutes, so a client must not rely on them tick by tick)."""
        contract = self.server.exchange.contracts.get(symbol)
        state = self.server.exchange.positions.get(symbol)
        if contract is None or state is None:
            return
        mark = self.server.exchange.mark(symbol)
        now = time.monotonic()
        interval = self.server.settings.account_update_interval_s
        for session in self.server.ready_sessions():
            if traded and session.subs.positions:
                session.send(enc.position(self.server.account, contract, state))
            wants_values = session.subs.account_updates or session.subs.account_multi
            due = traded or now - session.subs.account_values_sent >= interval
            if session.subs.account_updates:
                session.send(enc.portfolio_value(self.server.account, contract, state, mark))
            if wants_values and due:
                session.subs.account_values_sent = now
                if session.subs.account_updates:
                    self._send_account_values(session)
                for req_id in session.subs.account_multi:
                    self._send_account_multi(session, req_id)
