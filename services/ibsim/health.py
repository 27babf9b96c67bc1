"""Readiness probe for the simulator (compose healthcheck): ``python -m ibsim.health``.

Ready when its control port answers ``ping`` (the TWS port listens by then). Standard library
only, on purpose: a healthcheck that imports pandas (``ibsim.config``) took ~6 s on a loaded
2-core host and timed out, marking a healthy simulator unhealthy. It lives here, not in
``shared.health``, because the shared library imports no service.
"""

from __future__ import annotations

import json
import os
import socket
import sys

DEFAULT_CONTROL_PORT = 4003  # ibsim.config.IbsimSettings.control_port (a test keeps them equal)


def ping(port: int, timeout_s: float = 3.0) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b'{"cmd": "ping"}\n')
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("control port closed before replying")
            buffer += chunk
    reply: dict[str, object] = json.loads(buffer)
    return reply


def main() -> int:
    try:
        port = int(os.environ.get("IBSIM_CONTROL_PORT", DEFAULT_CONTROL_PORT))
        reply = ping(port)
    except (OSError, ValueError) as exc:
        print(f"ibsim: {exc}", file=sys.stderr)
        return 1
    print(f"ibsim: {'ready' if reply.get('ok') else 'not ready'} {reply}")
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
