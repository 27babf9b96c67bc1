"""The ``trainer.train`` command line: one ``--<field>`` per ``TrainConfig`` field.

``add_config_args`` declares ``--profile`` and the fields; ``config_from_args`` turns the parsed
flags (and ``trainer.config.add_source_args``' ``--source file|barstore --path P``) into the
profile's ``TrainConfig`` with those overrides.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from trainer.config import TrainConfig, source_overrides


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--profile`` plus one ``--<field>`` per TrainConfig field (JSON for lists/dicts)."""
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    for name in TrainConfig.__struct_fields__:
        parser.add_argument(
            "--" + name.replace("_", "-").rstrip("-"),
            dest=name,
            default=None,
            help=f"TrainConfig.{name}",
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The profile with every ``--<field>`` given; ``--source file|barstore --path P`` becomes
    a source spec (``trainer.config.source_overrides``), ``--symbols A,B`` a list."""
    overrides: dict[str, Any] = {}
    for name in TrainConfig.__struct_fields__:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        if name == "symbols" and not raw.lstrip().startswith("["):
            overrides[name] = [s.strip() for s in raw.split(",") if s.strip()]
            continue
        try:
            overrides[name] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[name] = raw
    if overrides.get("symbols") and "symbol" not in overrides:
        overrides["symbol"] = overrides["symbols"][0]
    if overrides.get("source") in ("file", "barstore"):
        dated = any(k in overrides for k in ("train_end", "val_start", "val_end", "test_start"))
        given = overrides.get("symbols") or (
            [overrides["symbol"]] if "symbol" in overrides else None
        )
        overrides.update(
            source_overrides(
                overrides["source"],
                getattr(args, "path", None),
                symbols=given,
                columns=getattr(args, "columns", None),
                tz=getattr(args, "tz", "UTC"),
                label=getattr(args, "label", "close"),
                bar=getattr(args, "bar", None),
                dated=dated,
            )
        )
    elif getattr(args, "path", None):
        raise SystemExit("--path needs --source file or --source barstore")
    return TrainConfig.profile(args.profile, **overrides)
