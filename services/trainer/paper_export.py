"""The export's paper-trading step: the artifact copied where execution loads it, and its config.

``paper_trading/models/<version>/`` (a copy of the artifact) and
``paper_trading/paper_trading_config.json`` (``shared.paper_config``): the file execution reads
today (the existing one, else the example) with the new model folder and the model's symbol
added, never a symbol removed; every changed key is printed, the old file kept as
``paper_trading_config.previous.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec

from trainer.progress import say


def write_paper_trading(
    root: Path, artifact: Path, symbol: str | list[str]
) -> tuple[Path, Path, list[str]]:
    """Copy the artifact to ``paper_trading/models/<version>/`` and update the config file.

    The config never narrows what execution trades: the new one starts from the file execution
    reads today (``paper_trading_config.json``, else the example next to it, as
    ``execution.config`` does) and only adds the model's symbol and the new ``model_dir``. Each
    changed key is printed and returned (``"symbols: [...] -> [...]"``); a replaced file is kept
    as ``paper_trading_config.previous.json``.
    """
    from shared.config import ConfigError
    from shared.paper_config import (
        PaperTradingConfig,
        dump_paper_config,
        load_paper_config,
    )

    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / artifact.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(artifact, target)
    config_path = root / "paper_trading_config.json"
    example_path = root / "paper_trading_config.example.json"
    model_dir = (
        str(target.relative_to(root.parent)) if root.parent in target.parents else str(target)
    )
    before: PaperTradingConfig | None = None
    source = config_path if config_path.exists() else example_path
    if source.exists():
        try:
            before = load_paper_config(source)
        except ConfigError as exc:
            if source == config_path:
                backup = config_path.with_suffix(".json.invalid")
                shutil.copyfile(config_path, backup)
                say("export", f"existing {config_path} is invalid ({exc}); kept as {backup}")
    wanted = [symbol] if isinstance(symbol, str) else list(symbol)
    if before is None:
        config = PaperTradingConfig(symbols=wanted, model_dir=model_dir)
    else:
        symbols = [*before.symbols, *(s for s in wanted if s not in before.symbols)]
        config = msgspec.structs.replace(before, symbols=symbols, model_dir=model_dir)
    changes = paper_config_changes(before, config)
    if config_path.exists() and changes:
        shutil.copyfile(config_path, root / "paper_trading_config.previous.json")
    config_path.write_bytes(dump_paper_config(config))
    origin = source.name if before is not None else "defaults"
    if changes:
        say(
            "export",
            f"{config_path} written from {origin}; what execution trades changes at its next "
            "start: " + "; ".join(changes),
        )
    else:
        say("export", f"{config_path}: unchanged")
    return target, config_path, changes


def paper_config_changes(before: Any, after: Any) -> list[str]:
    """``"key: old -> new"`` for every top-level key that differs (all keys when no ``before``)."""
    new = msgspec.to_builtins(after)
    old = msgspec.to_builtins(before) if before is not None else {}
    return [
        f"{key}: {json.dumps(old.get(key))} -> {json.dumps(value)}"
        for key, value in new.items()
        if old.get(key) != value
    ]
