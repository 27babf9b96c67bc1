"""Readiness probe for the simulator (compose healthcheck): ``python -m ibsim.health``.

Ready when its control port answers ``ping`` (the TWS port listens by then). It lives here, not
in ``shared.health``, because the shared library imports no service.
"""

from __future__ import annotations

import sys

from ibsim.config import load_settings
from ibsim.control import control_request


def main() -> int:
    try:
        reply = control_request(load_settings().control_port, {"cmd": "ping"}, timeout_s=3)
    except (OSError, ValueError) as exc:
        print(f"ibsim: {exc}", file=sys.stderr)
        return 1
    print(f"ibsim: {'ready' if reply.get('ok') else 'not ready'} {reply}")
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
