"""The seed's ``paper_trading.py --model-dir ...``: run the stack on one exported model.

    python scripts/paper_trading.py --model-dir paper_trading/models/model_YYYYMMDDHHMMSS
    make paper-trading MODEL_DIR=paper_trading/models/model_YYYYMMDDHHMMSS

Serves that model in inference, reads ``paper_trading/paper_trading_config.json`` (or
``--config``) in execution, and connects to the IB host/port it names: the bundled gateway
simulator by default; set ``IB_HOST``/``IB_PORT`` (TWS paper: 7497, IB Gateway paper: 4002) and
pass ``--no-simulator`` to trade a real paper account. Everything else is ``make run``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", required=True, help="exported model folder (model.onnx)")
    parser.add_argument("--config", default="paper_trading/paper_trading_config.json")
    parser.add_argument(
        "--no-simulator",
        action="store_true",
        help="do not start the bundled IB gateway simulator (real TWS/Gateway)",
    )
    args = parser.parse_args()
    model_dir = Path(args.model_dir).resolve()
    if not (model_dir / "model.onnx").is_file() or not (model_dir / "manifest.json").is_file():
        parser.error(f"{model_dir} has no model.onnx + manifest.json")
    config = Path(args.config)
    if not config.is_file():
        parser.error(
            f"{config} not found (make train writes it; an example is "
            "paper_trading/paper_trading_config.example.json)"
        )
    os.environ["INFERENCE_MODEL_DIR"] = str(model_dir.parent)
    os.environ["INFERENCE_MODEL_VERSION"] = model_dir.name
    os.environ["PAPER_TRADING_CONFIG"] = str(config.resolve())
    if args.no_simulator:
        skip = set(filter(None, os.environ.get("RUN_SKIP", "").split(",")))
        os.environ["RUN_SKIP"] = ",".join(sorted(skip | {"ibsim"}))
    sys.path.insert(0, str(ROOT / "scripts"))
    import run_local

    return run_local.main()


if __name__ == "__main__":
    sys.exit(main())
