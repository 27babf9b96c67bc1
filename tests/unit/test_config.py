import msgspec
import pytest

from shared.config import BusSettings, ConfigError, command_endpoint, from_env, require

pytestmark = pytest.mark.unit


class Example(msgspec.Struct, frozen=True, kw_only=True):
    port: int = 1
    symbols: tuple[str, ...] = ("AAPL",)
    ratio: float = 0.5

    def __post_init__(self) -> None:
        require(0 < self.ratio <= 1, "ratio", "must be in (0, 1]")


def test_values_are_read_and_converted() -> None:
    cfg = from_env(Example, "X_", {"X_PORT": "42", "X_SYMBOLS": "AAPL, MSFT", "X_RATIO": "0.25"})
    assert cfg == Example(port=42, symbols=("AAPL", "MSFT"), ratio=0.25)


def test_defaults_apply_when_unset() -> None:
    assert from_env(Example, "X_", {}) == Example()


def test_bad_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match="X_PORT"):
        from_env(Example, "X_", {"X_PORT": "forty-two"})


def test_validator_failure_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"X_RATIO: must be in \(0, 1\]"):
        from_env(Example, "X_", {"X_RATIO": "7"})


def test_bus_settings_validate_endpoints() -> None:
    with pytest.raises(ConfigError, match="BUS_PUB_ENDPOINT"):
        from_env(BusSettings, "BUS_", {"BUS_PUB_ENDPOINT": "localhost"})


def test_command_endpoint_validated() -> None:
    with pytest.raises(ConfigError, match="EXECUTION_CMD_ENDPOINT"):
        command_endpoint("execution", {"EXECUTION_CMD_ENDPOINT": "nonsense"})
