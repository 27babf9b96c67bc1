"""Readiness probe: ``python -m shared.health <service>`` exits 0 when the service says it is ready.

It sends a signed ``status`` command to the service's command endpoint; the service's answer
reflects real readiness (bus connected, model loaded, broker connected). Used by compose
healthchecks and by ``make`` targets that wait for the stack.
"""

from __future__ import annotations

import sys

from shared.auth import load_or_create_key
from shared.bus import CommandError, call
from shared.config import bus_settings, command_endpoint


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m shared.health <service>", file=sys.stderr)
        return 2
    service = argv[0]
    key = load_or_create_key(bus_settings().secret_file)
    try:
        status = call(command_endpoint(service), "status", {}, key, timeout_s=3.0, sender="health")
    except CommandError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 1
    ready = bool(status.get("ready")) if isinstance(status, dict) else False
    print(f"{service}: {'ready' if ready else 'not ready'} {status}")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
