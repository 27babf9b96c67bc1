"""The paper trading config: the example loads, every bad value fails naming its key."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from execution.config import load_config, paper_config_path

from shared.config import ConfigError
from shared.paper_config import (
    PaperTradingConfig,
    dump_paper_config,
    load_paper_config,
    parse_paper_config,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "paper_trading" / "paper_trading_config.example.json"


def _example() -> dict:
    return json.loads(EXAMPLE.read_text())


def test_example_file_loads_and_round_trips() -> None:
    cfg = load_paper_config(EXAMPLE)
    assert cfg.symbols and cfg.ib.port == 4002 and cfg.allow_live is False
    assert parse_paper_config(dump_paper_config(cfg)) == cfg


def test_minimal_file_gets_documented_defaults() -> None:
    cfg = parse_paper_config(b'{"symbols": ["AAPL"]}')
    assert cfg.trading_hours.start == "09:30" and cfg.trading_hours.end == "16:00"
    assert cfg.trading_days == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert cfg.weekday_numbers() == frozenset({0, 1, 2, 3, 4})
    assert cfg.monitoring.watch_services == ["inference", "marketdata"]


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"ib": {"port": 0}}, "ib.port"),
        ({"ib": {"port": "4002x"}}, "ib.port"),
        ({"ib": {"prot": 4002}}, "ib.prot"),
        ({"ib": {"currency": "DOLLARS"}}, "ib.currency"),
        ({"risk_per_trade": 1.5}, "risk_per_trade"),
        ({"max_position": 0}, "max_position"),
        ({"max_gross_exposure": -1}, "max_gross_exposure"),
        ({"max_orders_per_minute": 0}, "max_orders_per_minute"),
        ({"max_daily_loss": 0}, "max_daily_loss"),
        ({"order_type": "MOC"}, "order_type"),
        ({"trading_hours": {"start": "9:30"}}, "trading_hours.start"),
        ({"trading_hours": {"end": "25:00"}}, "trading_hours.end"),
        ({"trading_hours": {"start": "17:00", "end": "16:00"}}, "trading_hours.end"),
        ({"trading_hours": {"tz": "Mars/Olympus"}}, "trading_hours.tz"),
        ({"trading_hours": {"calendar": "XXXX"}}, "trading_hours.calendar"),
        ({"trading_days": ["Monday"]}, "trading_days"),
        ({"symbols": []}, "symbols"),
        ({"symbols": ["aapl"]}, "symbols"),
        ({"strategy": "rl-v1"}, "strategy"),
        ({"allow_live": "yes"}, "allow_live"),
        ({"logging": {"level": "LOUD"}}, "logging.level"),
        ({"monitoring": {"heartbeat_timeout_s": 0}}, "monitoring.heartbeat_timeout_s"),
        ({"typo_key": 1}, "typo_key"),
    ],
)
def test_bad_value_names_its_key(patch: dict, key: str) -> None:
    data = _example()
    for name, value in patch.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    with pytest.raises(ConfigError) as info:
        parse_paper_config(json.dumps(data), "cfg.json")
    assert f"key '{key}'" in str(info.value)
    assert "cfg.json" in str(info.value)


def test_missing_symbols_and_broken_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'symbols'"):
        parse_paper_config(b"{}")
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_paper_config(b'{"symbols": [')
    with pytest.raises(ConfigError, match="cannot read"):
        load_paper_config(tmp_path / "nope.json")


def test_execution_env_overrides_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    path.write_bytes(dump_paper_config(PaperTradingConfig(symbols=["AAPL"])))
    env = {
        "PAPER_TRADING_CONFIG": str(path),
        "EXECUTION_MAX_POSITION": "7",
        "EXECUTION_SYMBOLS": "AAPL,MSFT",
        "EXECUTION_TRADING_START": "10:00",
        "IB_PORT": "7497",
        "IB_CLIENT_ID": "3",
    }
    cfg = load_config(env)
    assert cfg.paper.max_position == 7
    assert cfg.paper.symbols == ["AAPL", "MSFT"]
    assert cfg.paper.trading_hours.start == "10:00"
    assert (cfg.paper.ib.port, cfg.paper.ib.client_id) == (7497, 3)
    assert cfg.settings.broker == "ib"
    with pytest.raises(ConfigError, match="EXECUTION_MAX_POSITION"):
        load_config({**env, "EXECUTION_MAX_POSITION": "0"})
    with pytest.raises(ConfigError, match="IB_PORT"):
        load_config({**env, "IB_PORT": "70000"})
    with pytest.raises(ConfigError, match="EXECUTION_BROKER"):
        load_config({**env, "EXECUTION_BROKER": "paper"})
    with pytest.raises(ConfigError, match="EXECUTION_CONFIRM_LIVE"):
        load_config({**env, "EXECUTION_CONFIRM_LIVE": "yes"})
    with pytest.raises(ConfigError, match="EXECUTION_SIM_COSTS"):
        load_config({**env, "EXECUTION_SIM_COSTS": '{"spread_bps": -1}'})


def test_default_path_falls_back_to_the_example(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert paper_config_path({}).name in (
        "paper_trading_config.json",
        "paper_trading_config.example.json",
    )
    (tmp_path / "paper_trading").mkdir()
    mine = tmp_path / "paper_trading" / "paper_trading_config.json"
    mine.write_text('{"symbols": ["IBM"]}')
    assert paper_config_path({}) == mine
    assert load_config({}).paper.symbols == ["IBM"]


def test_schema_is_a_frozen_struct() -> None:
    cfg = parse_paper_config(b'{"symbols": ["AAPL"]}')
    with pytest.raises(AttributeError):
        cfg.max_position = 5  # type: ignore[misc]
    assert isinstance(msgspec.to_builtins(cfg), dict)


@pytest.mark.parametrize(
    "variable",
    [
        "EXECUTION_MAX_DAILY_LOSS",
        "EXECUTION_MAX_GROSS_EXPOSURE",
        "EXECUTION_RISK_PER_TRADE",
        "EXECUTION_SIM_INITIAL_CASH",
        "EXECUTION_HEARTBEAT_TIMEOUT_S",
        "EXECUTION_RECONNECT_MIN_S",
        "EXECUTION_RECONNECT_MAX_S",
        "EXECUTION_COMMISSION_WAIT_S",
    ],
)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300"])
def test_non_finite_or_huge_limits_are_refused_by_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    path = tmp_path / "paper.json"
    path.write_bytes(dump_paper_config(PaperTradingConfig(symbols=["AAPL"])))
    with pytest.raises(ConfigError, match=variable):
        load_config({"PAPER_TRADING_CONFIG": str(path), variable: value})


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"max_daily_loss": 1e300}, "max_daily_loss"),
        ({"max_gross_exposure": 1e300}, "max_gross_exposure"),
        ({"stop_atr_multiple": 1e300}, "stop_atr_multiple"),
        ({"take_profit_atr_multiple": 1e300}, "take_profit_atr_multiple"),
        ({"max_position": 10**12}, "max_position"),
        ({"max_orders_per_minute": 10**9}, "max_orders_per_minute"),
        ({"ib": {"connect_timeout_s": 1e300}}, "ib.connect_timeout_s"),
        ({"logging": {"track_record_interval_s": 1e300}}, "logging.track_record_interval_s"),
        ({"monitoring": {"heartbeat_timeout_s": 1e300}}, "monitoring.heartbeat_timeout_s"),
    ],
)
def test_out_of_range_limits_in_the_file_name_their_key(patch: dict, key: str) -> None:
    data = _example()
    for name, value in patch.items():
        if isinstance(value, dict):
            data[name] = {**data.get(name, {}), **value}
        else:
            data[name] = value
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        parse_paper_config(json.dumps(data), "cfg.json")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_schema_refuses_non_finite_limits_built_in_code(value: float) -> None:
    for name in ("max_daily_loss", "max_gross_exposure", "risk_per_trade", "stop_atr_multiple"):
        with pytest.raises(ValueError, match=name):
            PaperTradingConfig(symbols=["AAPL"], **{name: value})
