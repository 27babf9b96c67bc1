"""Readiness probe: ``python -m shared.health <service>`` exits 0 when the service says it is ready.

It sends a signed ``status`` command to the service's command endpoint; the service's answer
reflects real readiness (bus connected, model loaded, broker connected). The bus forwarder has no
command endpoint: it is ready when both of its sockets accept connections. The IB gateway
simulator has its own probe (``python -m ibsim.health``): the shared library imports no service.
Used by compose healthchecks.
"""

from __future__ import annotations

import socket
import sys

from shared.auth import load_or_create_key
from shared.bus import security_from_env
from shared.command_channel import CommandError, call
from shared.config import bus_settings, command_endpoint


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m shared.health <service>", file=sys.stderr)
        return 2
    service = argv[0]
    if service == "bus":
        return _bus_ready()
    try:
        key = load_or_create_key(bus_settings().secret_file)
        # The probe asks as the service's own identity: status is open to every identity.
        security = security_from_env(service)
        status = call(
            command_endpoint(service),
            "status",
            {},
            key,
            timeout_s=3.0,
            sender="health",
            security=security,
            server=service,
        )
    except (CommandError, OSError, ValueError) as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 1
    ready = bool(status.get("ready")) if isinstance(status, dict) else False
    print(f"{service}: {'ready' if ready else 'not ready'} {status}")
    return 0 if ready else 1


def _bus_ready() -> int:
    settings = bus_settings()
    for endpoint in (settings.pub_endpoint, settings.sub_endpoint):
        host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError as exc:
            print(f"bus: {endpoint} not accepting: {exc}", file=sys.stderr)
            return 1
    print("bus: ready")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
