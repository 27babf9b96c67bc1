"""The seed's ``paper_trading.py --model-dir ...``: run the stack on one exported model.

    python scripts/paper_trading.py --model-dir paper_trading/models/model_YYYYMMDDHHMMSS
    make paper-trading MODEL_DIR=paper_trading/models/model_YYYYMMDDHHMMSS

Serves that model in inference, reads ``paper_trading/paper_trading_config.json`` (or
``--config``) in execution, and trades through the gateway it names: bars come in through the
TWS API (``MARKETDATA_SOURCE=ib``) from the same gateway the orders go to. By default that is the
bundled gateway simulator, replaying the packaged history as the market; to trade a real paper
account set ``IB_HOST``/``IB_PORT`` (TWS paper: 7497, IB Gateway paper: 4002; + ``IB_CLIENT_ID``
for execution, ``MARKETDATA_IB_CLIENT_ID`` for marketdata) and pass ``--no-simulator``.
Everything else is ``make run``.

Before anything starts it prints what it will trade: symbols, bar size, the gateway, the client
ids, the account, the limits of the paper config and the trading hours. Against a live account
execution's guard still refuses to start unless the config's ``allow_live`` and
``EXECUTION_CONFIRM_LIVE`` both say so.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def prepare_env(env: MutableMapping[str, str], simulator: bool) -> None:
    """One gateway for both IB clients and one symbol list for marketdata, the simulator and
    execution, all from the paper config unless a variable already says otherwise."""
    from execution.config import load_config

    paper = load_config(env).paper
    env.setdefault("IB_HOST", paper.ib.host)
    env.setdefault("IB_PORT", str(paper.ib.port))
    env.setdefault("MARKETDATA_SOURCE", "ib")
    env.setdefault("MARKETDATA_SYMBOLS", ",".join(paper.symbols))
    if simulator:
        env.setdefault("IBSIM_PORT", env["IB_PORT"])
        env.setdefault("IBSIM_REPLAY_SYMBOLS", env["MARKETDATA_SYMBOLS"])  # plays what is traded
        env.setdefault("IBSIM_REPLAY_SPEED", f"{simulator_pace(paper):g}")


def simulator_pace(paper: Any) -> float:
    """The simulator's speed: its default (a trading day every 5 s) unless the paper config trades
    so many symbols that an order per symbol and bar would pass ``max_orders_per_minute``
    (``make train`` on the six packaged stocks writes six): then slower, so the worst case stays
    within the limit instead of tripping execution's order-rate refusal."""
    from ibsim.config import DEFAULT_REPLAY_SPEED

    bars_per_minute_allowed = paper.max_orders_per_minute / max(1, len(paper.symbols))
    return min(DEFAULT_REPLAY_SPEED, bars_per_minute_allowed * 86_400 / 60)


def plan(env: Mapping[str, str], simulator: bool) -> str:
    """What the stack will trade, in words (printed before it starts)."""
    from execution.config import load_config
    from ibsim.config import load_settings as ibsim_settings
    from marketdata.config import load_settings as marketdata_settings

    config = load_config(env)
    paper, md = config.paper, marketdata_settings(env)
    hours = paper.trading_hours
    lines = [
        "paper trading plan",
        f"  model:           {env.get('INFERENCE_MODEL_DIR', '?')}/"
        f"{env.get('INFERENCE_MODEL_VERSION', '?')}",
        f"  config:          {config.paper_path}",
        f"  symbols:         {', '.join(paper.symbols)} (bars: {', '.join(md.symbols)})",
        f"  bar size:        {md.bar_size} (market data source: {md.kind})",
        f"  gateway:         {paper.ib.host}:{paper.ib.port} (orders), "
        f"{md.ib_endpoint} (market data)",
        f"  client ids:      execution {paper.ib.client_id}, marketdata {md.ib_client_id}",
        f"  account:         {paper.ib.account or 'the one account the gateway manages'}"
        " (a live account is refused unless allow_live and EXECUTION_CONFIRM_LIVE)",
        f"  limits:          max_position {paper.max_position} shares, max_gross_exposure "
        f"{paper.max_gross_exposure:g}, max_orders_per_minute {paper.max_orders_per_minute}, "
        f"max_daily_loss {paper.max_daily_loss:g}, risk_per_trade {paper.risk_per_trade:g}, "
        f"order_type {paper.order_type}{', reduce_only' if paper.reduce_only else ''}",
        f"  trading hours:   {hours.start}-{hours.end} {hours.tz}, "
        f"{'/'.join(paper.trading_days)}, calendar {hours.calendar or 'none'}",
        f"  delayed data:    {'allowed' if md.ib_allow_delayed else 'refused (354/10167 stop)'}",
    ]
    if simulator:
        sim = ibsim_settings(env)
        lines.append(
            f"  market:          ibsim replays {sim.replay_dataset} from {sim.replay_start} at "
            f"{sim.replay_speed:g}x real time (worst case "
            f"{sim.replay_orders_per_minute or 0:.0f} orders/min)"
        )
    else:
        lines.append("  market:          the real gateway (no simulator)")
    return "\n".join(lines)


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
    simulator = not args.no_simulator
    from shared.config import ConfigError

    try:
        prepare_env(os.environ, simulator)
        print(plan(os.environ, simulator), flush=True)
    except ConfigError as exc:
        print(f"paper trading: configuration error: {exc}", file=sys.stderr)
        return 2
    if not simulator:
        skip = set(filter(None, os.environ.get("RUN_SKIP", "").split(",")))
        os.environ["RUN_SKIP"] = ",".join(sorted(skip | {"ibsim"}))
    sys.path.insert(0, str(ROOT / "scripts"))
    import run_local

    return run_local.main()


if __name__ == "__main__":
    sys.exit(main())
