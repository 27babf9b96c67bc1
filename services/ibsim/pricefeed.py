"""Price source (a): ``bar.<SYM>`` messages from the project's ZeroMQ bus.

Bars go to ``Exchange.on_bar`` with the bar's own open and close times, so the simulator trades
on exactly the bars the rest of the stack sees. Price source (b) is programmatic: tests call
``Exchange.on_bar`` directly or send ``push_bar`` to the control port.
"""

from __future__ import annotations

import logging

import zmq.asyncio

from ibsim.exchange import Exchange
from shared.bus import Subscriber
from shared.config import BusSettings
from shared.curve import BusSecurity
from shared.logs import event
from shared.messages import Bar

log = logging.getLogger("ibsim.pricefeed")


async def run_bus_feed(exchange: Exchange, bus: BusSettings, ctx: zmq.asyncio.Context) -> None:
    """Feed every ``bar.*`` message into the exchange until cancelled."""
    # The simulator subscribes as its own identity, which may publish nothing.
    security = BusSecurity.load(bus.resolved_keys_dir, "ibsim") if bus.curve else None
    subscriber = Subscriber(ctx, bus.sub_endpoint, ["bar."], security=security)
    event(log, "price_feed_subscribed", endpoint=bus.sub_endpoint)
    try:
        while True:
            message = await subscriber.recv()
            if not isinstance(message, Bar):
                continue
            try:
                exchange.on_bar(
                    message.symbol,
                    message.ts_event,
                    message.open,
                    message.high,
                    message.low,
                    message.close,
                    message.volume,
                    bar_open_ts=message.bar_open_ts,
                    published_ns=message.ts_publish,
                )
            except ValueError as exc:  # a malformed bar is refused, the feed goes on
                event(
                    log,
                    "bar_refused",
                    logging.WARNING,
                    symbol=message.symbol,
                    seq=message.seq,
                    error=str(exc),
                )
            except Exception:  # a simulator bug on one bar must not stop the feed either
                log.exception(
                    "bar_failed", extra={"fields": {"symbol": message.symbol, "seq": message.seq}}
                )
    finally:
        subscriber.close()
