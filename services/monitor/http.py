"""A small read-only JSON API over HTTP on the monitor's published port (default 8080).

    GET /health  -> status counters       GET /pnl    -> equity, PnL, positions
    GET /fills   -> every booked fill     GET /orders -> order events
    GET /quarantine -> fills not booked (no matching order) and exec-id conflicts

Plain asyncio streams, no framework: it answers GET with JSON and nothing else, so it cannot
change anything that trades. Compose publishes it on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from shared.logs import event

log = logging.getLogger("monitor.http")
_json = msgspec.json.Encoder()

Route = Callable[[dict[str, Any]], Awaitable[Any]]


class JsonHttpServer:
    def __init__(self, routes: dict[str, Route]) -> None:
        self._routes = routes

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._handle, host, port)
        event(log, "http_listening", host=host, port=port, paths=sorted(self._routes))
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
            if method != "GET":
                status, body = "405 Method Not Allowed", {"error": "only GET"}
            elif path not in self._routes:
                status, body = (
                    "404 Not Found",
                    {"error": f"unknown path; try {sorted(self._routes)}"},
                )
            else:
                status, body = "200 OK", await self._routes[path]({})
            payload = _json.encode(body)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
