"""reqExecutions' filter (IB's ``ExecutionFilter``) over the simulator's execution record."""

from __future__ import annotations

from collections.abc import Iterable

from ibsim.bars import parse_ib_time
from ibsim.models import ExecutionFilterQuery, ExecutionRecord


def matching_executions(
    records: Iterable[ExecutionRecord],
    query: ExecutionFilterQuery,
    visible_clients: Iterable[int] | None,
) -> list[ExecutionRecord]:
    """The records matching the filter, in their order; ``visible_clients`` None = all clients."""
    allowed = None if visible_clients is None else set(visible_clients)
    since = parse_ib_time(query.time) if query.time else None
    side = {"BUY": "BOT", "SELL": "SLD"}.get(query.side.upper(), query.side.upper())
    out = []
    for record in records:
        if allowed is not None and record.client_id not in allowed:
            continue
        if query.client_id and record.client_id != query.client_id:
            continue
        if query.account and record.account != query.account:
            continue
        if query.symbol and record.symbol != query.symbol.upper():
            continue
        if query.sec_type and query.sec_type.upper() != "STK":
            continue
        if query.exchange and query.exchange.upper() not in ("SMART", record.venue):
            continue
        if side and record.side != side:
            continue
        if since is not None and record.time_ns < since:
            continue
        out.append(record)
    return out
