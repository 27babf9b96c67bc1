"""The bus forwarder: XSUB (publishers connect) <-> XPUB (subscribers connect).

It holds no state and decodes nothing; subscriptions flow upstream, messages downstream. If it
restarts, ZeroMQ reconnects both sides and re-sends subscriptions by itself.

    python -m shared.busproxy
"""

from __future__ import annotations

import contextlib
import signal
import sys

import zmq

from shared.config import ConfigError, bus_settings
from shared.logs import configure, event


def main() -> int:
    log = configure("busproxy")
    try:
        settings = bus_settings()
    except ConfigError as exc:
        event(log, "config_error", error=str(exc))
        return 2
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    frontend = ctx.socket(zmq.XSUB)
    backend = ctx.socket(zmq.XPUB)
    for sock in (frontend, backend):
        sock.setsockopt(zmq.SNDHWM, 200_000)
        sock.setsockopt(zmq.RCVHWM, 200_000)
    pub_port = settings.pub_endpoint.rsplit(":", 1)[-1]
    sub_port = settings.sub_endpoint.rsplit(":", 1)[-1]
    frontend.bind(f"tcp://{settings.bind_host}:{pub_port}")
    backend.bind(f"tcp://{settings.bind_host}:{sub_port}")
    event(log, "started", xsub=pub_port, xpub=sub_port, bind_host=settings.bind_host)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit, zmq.ContextTerminated):
        zmq.proxy(frontend, backend)
    event(log, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
