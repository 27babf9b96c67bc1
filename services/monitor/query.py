"""Read the ledger from the command line: ``python -m monitor.query fills|orders|pnl|quarantine``.

Asks the running monitor over its command endpoint; with ``--ledger PATH`` it reads the SQLite
file directly instead (works when the stack is down).
"""

from __future__ import annotations

import argparse
import json
import sys

from monitor.ledger import Ledger
from shared.auth import load_or_create_key
from shared.command_channel import CommandError, call
from shared.config import bus_settings, command_endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.query", description=__doc__)
    parser.add_argument("what", choices=["fills", "orders", "pnl", "quarantine"])
    parser.add_argument("--ledger", help="read this SQLite ledger file instead of the service")
    args = parser.parse_args(argv)
    if args.ledger:
        ledger = Ledger(args.ledger)
        if args.what == "pnl":
            parser.error("pnl needs the running monitor (it marks positions to live prices)")
        result: object
        if args.what == "quarantine":
            result = {"quarantine": ledger.quarantined(), "conflicts": ledger.conflicts()}
        else:
            result = ledger.fills() if args.what == "fills" else ledger.order_events()
    else:
        key = load_or_create_key(bus_settings().secret_file)
        try:
            result = call(command_endpoint("monitor"), args.what, {}, key, sender="query")
        except CommandError as exc:
            print(f"monitor: {exc}", file=sys.stderr)
            return 1
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
