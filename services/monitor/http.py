"""The monitor's one HTTP server (aiohttp) on its published port (default 127.0.0.1:8080).

    GET /            -> the dashboard (HTML; script, styles and chart library under /static/)
    GET /events      -> server-sent events: one ``snapshot`` per dashboard interval
    GET /dashboard.json -> the same snapshot once   GET /alerts -> active and recent alerts
    GET /metrics     -> Prometheus text format
    GET /health  -> status counters       GET /pnl    -> equity, PnL, positions
    GET /fills   -> every booked fill     GET /orders -> order events
    GET /quarantine -> fills not booked (no matching order) and exec-id conflicts
    GET /reports -> the paper-vs-backtest reports (HTML list)   GET /reports.json -> the same
    GET /reports/<period>/<file> -> one report's file, read-only (``monitor.reports``: plain
                    names only, inside the reports directory; scripts never run in it)

Read-only: GET (and HEAD) only, anything else is 405; nothing here can change anything that
trades. Compose publishes the port on 127.0.0.1 only. At most ``MAX_STREAMS`` live streams at
once (a 503 beyond), so a forgotten tab cannot pile up work.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from monitor import dashboard, reports, vendor_uplot
from monitor.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from shared.logs import event

if TYPE_CHECKING:
    from monitor.service import MonitorService

log = logging.getLogger("monitor.http")
_json = msgspec.json.Encoder()

Route = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_STREAMS = 32
KEEPALIVE_S = 15.0

STATIC: dict[str, tuple[str, str]] = {
    "/static/uplot.js": (vendor_uplot.JS, "application/javascript"),
    "/static/uplot.css": (vendor_uplot.CSS, "text/css"),
    "/static/uplot.LICENSE.txt": (vendor_uplot.LICENSE, "text/plain"),
    "/static/dashboard.js": (dashboard.JS, "application/javascript"),
    "/static/dashboard.css": (dashboard.CSS, "text/css"),
}


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        return _json_response({"error": "read-only: only GET"}, 405)
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        return _json_response({"error": "unknown path; try /"}, 404)
    response.headers.setdefault("Content-Security-Policy", dashboard.CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(body), status=status, content_type="application/json")


def build_app(routes: dict[str, Route], service: MonitorService | None = None) -> web.Application:
    """The JSON ``routes`` and, with ``service``, the dashboard, its stream and ``/metrics``."""
    app = web.Application(middlewares=[_headers])
    streams = {"open": 0}

    def json_route(handler: Route) -> Any:
        async def serve(request: web.Request) -> web.Response:
            return _json_response(await handler({}))

        return serve

    for path, handler in routes.items():
        app.router.add_get(path, json_route(handler))
    if service is None:
        return app

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=dashboard.HTML, content_type="text/html")

    def static(body: str, content_type: str) -> Any:
        async def serve(request: web.Request) -> web.Response:
            return web.Response(text=body, content_type=content_type)

        return serve

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=service.metrics.render())
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response

    async def events(request: web.Request) -> web.StreamResponse:
        if streams["open"] >= MAX_STREAMS:
            return _json_response({"error": "too many live streams"}, 503)
        streams["open"] += 1
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            seq = -1
            while True:
                if service.snapshot_seq != seq and service.snapshot:
                    seq = service.snapshot_seq
                    data = _json.encode(service.snapshot)
                    await response.write(b"event: snapshot\nid: %d\ndata: %s\n\n" % (seq, data))
                changed = service.snapshot_changed
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            streams["open"] -= 1
        return response

    async def report_list(request: web.Request) -> web.Response:
        found = reports.find_reports(service.settings.reports_dir)
        rows = "".join(
            f"<li>{html.escape(r['period'])}: "
            + " ".join(f'<a href="{html.escape(r[k])}">{k}</a>' for k in ("html", "json") if r[k])
            + "</li>"
            for r in found
        )
        body = (
            "<!doctype html><meta charset=utf-8><title>paper vs backtest</title>"
            "<h1>Paper versus backtest reports</h1>"
            + (f"<ul>{rows}</ul>" if rows else "<p>no comparison yet: run make compare</p>")
            + '<p><a href="/">dashboard</a></p>'
        )
        return web.Response(text=body, content_type="text/html")

    async def report_json(request: web.Request) -> web.Response:
        return _json_response(reports.find_reports(service.settings.reports_dir))

    async def report_file(request: web.Request) -> web.StreamResponse:
        found = reports.report_file(
            service.settings.reports_dir,
            request.match_info["period"],
            request.match_info["name"],
        )
        if found is None:
            return _json_response({"error": "no such report file"}, 404)
        path, content_type = found
        response = web.FileResponse(path, headers={"Content-Type": content_type})
        response.headers["Content-Security-Policy"] = reports.REPORT_CSP
        return response

    app.router.add_get("/", index)
    app.router.add_get("/reports", report_list)
    app.router.add_get("/reports.json", report_json)
    app.router.add_get("/reports/{period}/{name}", report_file)
    app.router.add_get("/dashboard", index)
    for path, (body, content_type) in STATIC.items():
        app.router.add_get(path, static(body, content_type))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/events", events)
    app.router.add_get("/dashboard.json", json_route(service.dashboard_json))
    app.router.add_get("/alerts", json_route(service.alerts_json))
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    """Run ``app`` on host:port until cancelled."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        paths = sorted({r.resource.canonical for r in app.router.routes() if r.resource})
        event(log, "http_listening", host=host, port=port, paths=paths)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
