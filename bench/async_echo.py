"""The second baseline of ``bar_to_signal_1``: an asyncio echo built from the services' own bus
machinery, doing no work.

``python -m bench.async_echo`` connects as ``monitor`` (``shared.runtime.connect_bus``), takes
``pnl.AIN`` with the services' ``Subscriber.serve`` (decode, validate, sequence check, the
event loop's reader on ZeroMQ's descriptor) and answers each message with a ``PnL`` on
``pnl.AECHO`` through the services' ``Publisher`` (stamp, encode, send). So the round trip through
it costs everything ``bar_to_signal_1`` costs except inference's own work (features, normaliser,
ONNX): the difference between it and the bare echo is the Python service machinery, the
difference between inference and it is the per-bar work. Prints ``ready`` once subscribed.
"""

from __future__ import annotations

import asyncio
import os

import msgspec

from shared.messages import Message, PnL
from shared.runtime import connect_bus

IN_TOPIC = "pnl.AIN"
ECHO_ACCOUNT = "AECHO"


async def echo() -> None:
    bus = connect_bus("monitor", os.environ)
    subscriber = bus.subscriber([IN_TOPIC])

    def answer(batch: list[Message]) -> None:
        for message in batch:
            if isinstance(message, PnL):
                bus.publisher.publish(msgspec.structs.replace(message, account=ECHO_ACCOUNT, seq=0))

    print("ready", flush=True)
    try:
        await subscriber.serve(answer)  # as inference serves its bars
    finally:
        subscriber.close()
        bus.close()


if __name__ == "__main__":
    asyncio.run(echo())
