"""Send one signed command to the running trainer service and print the JSON reply.

    python -m trainer.ctl status
    python -m trainer.ctl list_models
    python -m trainer.ctl push_model version=model_20260101120000 [force=true]
    python -m trainer.ctl rollback
    python -m trainer.ctl shadow version=model_20260101120000   (a candidate beside the live one)
    python -m trainer.ctl promote_shadow [force=true]            (it becomes live; rollback works)
    python -m trainer.ctl drop_shadow
    python -m trainer.ctl train profile=quick
    python -m trainer.ctl tune profile=quick pipeline=true

Values are parsed as JSON when they can be (``force=true``, ``samples=4``), else kept as text.
Exit code 1 when the service refuses the command or does not answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.auth import load_or_create_key
from shared.command_channel import CommandError, call
from shared.config import bus_settings, command_endpoint
from trainer.config import parse_key_values


def parse_args(items: list[str]) -> dict[str, Any]:
    return parse_key_values(items, "argument")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.ctl", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command")
    parser.add_argument("args", nargs="*", metavar="key=value")
    parser.add_argument("--timeout", type=float, default=30.0)
    ns = parser.parse_args(argv)
    key = load_or_create_key(bus_settings().secret_file)
    try:
        result = call(
            command_endpoint("trainer"),
            ns.command,
            parse_args(ns.args),
            key,
            timeout_s=ns.timeout,
            sender="trainer.ctl",
        )
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
