"""``make retrain``: one retraining cycle on command, followed on the terminal.

    python -m trainer.retrain_now [window=180d] [--until shadow|done] [--timeout 3600]

Sends the running trainer service its ``retrain`` command (what ``python -m trainer.ctl retrain``
does: train on the bar store's latest window, gate on the validation folds, load the candidate
as a shadow; ``trainer.retrain``), then asks ``status`` every few seconds and prints each state
the record moves through with its numbers (gate verdict, sessions done / needed, the decision).
It stops once the record reaches ``--until``: ``shadow`` (default: training and the gate are
over; the shadow sessions take days and go on in the service) or ``done`` (promoted or dropped),
and prints where the record is: ``<model root>/retrain.json`` (every step with its numbers) and
the decisions file ``<output>/retrain/<id>.decisions.jsonl``. The monitor's dashboard shows the
same record (its Retraining panel and ``/api/state`` field ``retrain``).

Exit codes: 0 reached ``--until`` (a dropped candidate included: that is a result), 1 the
service refused or did not answer, 3 ``--timeout`` passed first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.config import parse_key_values

FINAL = ("promoted", "dropped")
Caller = Callable[[str, dict[str, Any]], Any]


def describe(last: dict[str, Any]) -> str:
    """One line for a record summary (``RetrainLoop.status()['last']``)."""
    parts = [f"{last.get('id', '?')}: {last.get('state', '?')}"]
    for key in ("version", "shadow_version"):
        if last.get(key):
            parts.append(f"{key} {last[key]}")
    if last.get("state") == "shadow":
        parts.append(
            f"sessions {last.get('sessions_done', 0)}/{last.get('sessions_needed', '?')}"
            f", decisions seen {last.get('decisions_seen', 0)}"
        )
    if last.get("why"):
        parts.append(f"why: {last['why']}")
    decision = last.get("decision")
    if isinstance(decision, dict) and decision:
        parts.append(f"decision: {json.dumps(decision, sort_keys=True, default=str)}")
    return "; ".join(parts)


def follow(
    caller: Caller,
    args: dict[str, Any],
    *,
    until: str = "shadow",
    timeout_s: float = 3600.0,
    poll_s: float = 3.0,
    out: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Start a retrain through ``caller(command, args)`` and print its states until ``until``."""
    started = caller("retrain", args)
    rid = started.get("id")
    out(f"retrain {rid} started ({started.get('reason', 'command')}); training on the bar store")
    deadline = clock() + timeout_s
    seen = ""
    status: dict[str, Any] = {}
    while True:
        status = caller("status", {})
        last = (status.get("retrain") or {}).get("last") or {}
        if last.get("id") == rid:
            line = describe(last)
            if line != seen:
                out(line)
                seen = line
            state = last.get("state")
            if state in FINAL or (until == "shadow" and state == "shadow"):
                break
        if clock() >= deadline:
            out(f"timeout after {timeout_s:.0f}s; the retrain goes on in the trainer service")
            _where(status, rid, out)
            return 3
        sleep(poll_s)
    _where(status, rid, out)
    return 0


def _where(status: dict[str, Any], rid: Any, out: Callable[[str], None]) -> None:
    model_dir = Path(str(status.get("model_dir", "models")))
    output_dir = Path(str(status.get("output_dir", ".")))
    out(f"record: {model_dir / 'retrain.json'} (id {rid}: every step with its numbers)")
    out(f"decisions: {output_dir / 'retrain' / f'{rid}.decisions.jsonl'} (while a shadow)")
    out("follow: python -m trainer.ctl status, or the monitor dashboard's Retraining panel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.retrain_now", description=__doc__.split("\n")[0]
    )
    parser.add_argument("args", nargs="*", metavar="key=value", help="window=180d")
    parser.add_argument("--until", choices=("shadow", "done"), default="shadow")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to follow")
    parser.add_argument("--poll", type=float, default=3.0)
    ns = parser.parse_args(argv)

    from shared.auth import load_or_create_key
    from shared.command_channel import CommandError, call
    from shared.config import bus_settings, command_endpoint

    key = load_or_create_key(bus_settings().secret_file)
    endpoint = command_endpoint("trainer")

    def caller(name: str, args: dict[str, Any]) -> Any:
        return call(endpoint, name, args, key, timeout_s=30.0, sender="trainer.retrain_now")

    try:
        return follow(
            caller,
            parse_key_values(ns.args, "argument"),
            until=ns.until,
            timeout_s=ns.timeout,
            poll_s=ns.poll,
        )
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
