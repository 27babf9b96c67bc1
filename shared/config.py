"""Typed settings from environment variables, validated at start (twelve-factor).

A service declares its settings as a ``msgspec.Struct`` with documented defaults and calls
``from_env(Settings, "EXECUTION_")``. Every field ``foo_bar`` is read from ``EXECUTION_FOO_BAR``;
a value that does not convert, or that the struct's ``__post_init__`` rejects, raises
``ConfigError`` naming the variable, so a typo fails the start instead of trading on a default.
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the key."""


def _is_sequence_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, frozenset, set):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence_type(arg) for arg in typing.get_args(annotation))
    return False


def _parse_raw(raw: str, annotation: Any) -> Any:
    if _is_sequence_type(annotation):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def from_env(cls: type[T], prefix: str, env: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from ``prefix + FIELD`` environment variables (other keys are ignored)."""
    source = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        key = f"{prefix}{field.name.upper()}"
        if key not in source:
            continue
        raw = source[key]
        try:
            values[field.name] = msgspec.convert(
                _parse_raw(raw, hints[field.name]), hints[field.name], strict=False
            )
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{key}={raw!r} is invalid: {exc}") from None
        if not _all_finite(values[field.name]):
            # "inf" converts to a float, and an infinite limit is no limit: refuse it by name.
            raise ConfigError(f"{key}={raw!r} is invalid: must be a finite number")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        # __post_init__ validators raise ValueError("field_name: why"); map the field to its key.
        message = str(exc)
        field_name = message.split(":", 1)[0].strip()
        key = f"{prefix}{field_name.upper()}" if field_name in hints else prefix + "*"
        raise ConfigError(f"{key}: {message.split(':', 1)[-1].strip()}") from None


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_all_finite(item) for item in value)
    return True


def require(condition: bool, field_name: str, why: str) -> None:
    """Validator helper for ``__post_init__``: ``require(self.port > 0, "port", "must be > 0")``."""
    if not condition:
        raise ValueError(f"{field_name}: {why}")


class BusSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the bus forwarder listens and where the command secret lives (prefix ``BUS_``)."""

    pub_endpoint: str = "tcp://127.0.0.1:5550"  # publishers connect here (forwarder's XSUB)
    sub_endpoint: str = "tcp://127.0.0.1:5551"  # subscribers connect here (forwarder's XPUB)
    secret_file: str = "var/secrets/bus.key"  # HMAC key for commands, created on first start
    # CURVE key pairs, one per identity; empty = a "curve" folder beside secret_file.
    keys_dir: str = ""
    curve: bool = True  # authenticate and encrypt every bus socket (off only to measure its cost)
    bind_host: str = "127.0.0.1"  # where servers bind; 0.0.0.0 inside containers
    heartbeat_interval_s: float = 1.0
    command_timeout_s: float = 5.0
    max_message_bytes: int = 256 * 1024  # ZMQ_MAXMSGSIZE on every receiving socket

    @property
    def resolved_keys_dir(self) -> str:
        return self.keys_dir or os.path.join(os.path.dirname(self.secret_file) or ".", "curve")

    def __post_init__(self) -> None:
        for name in ("pub_endpoint", "sub_endpoint"):
            value = getattr(self, name)
            require(
                "://" in value,
                name,
                f"must be a ZeroMQ endpoint like tcp://host:port, got {value!r}",
            )
        require(
            0 < self.heartbeat_interval_s <= 3600, "heartbeat_interval_s", "must be in (0, 3600]"
        )
        require(0 < self.command_timeout_s <= 3600, "command_timeout_s", "must be in (0, 3600]")
        require(
            1024 <= self.max_message_bytes <= 64 * 1024 * 1024,
            "max_message_bytes",
            "must be between 1024 and 67108864",
        )
        require(bool(self.secret_file.strip()), "secret_file", "must not be empty")
        require(_valid_host(self.bind_host), "bind_host", f"not a host: {self.bind_host!r}")
        for name in ("pub_endpoint", "sub_endpoint"):
            require(_valid_endpoint(getattr(self, name)), name, "needs a port in 1..65535")


def _valid_host(host: str) -> bool:
    return bool(host) and len(host) <= 253 and all(c.isalnum() or c in ".-:_*[]" for c in host)


def _valid_endpoint(endpoint: str) -> bool:
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return bool(rest)
    host, _, port = rest.rpartition(":")
    return _valid_host(host) and port.isdigit() and 0 < int(port) < 65536


def bus_settings(env: Mapping[str, str] | None = None) -> BusSettings:
    return from_env(BusSettings, "BUS_", env)


# Command endpoints (ROUTER) per service: clients connect to ``<SERVICE>_CMD_ENDPOINT``; the
# service binds the same port on ``BUS_BIND_HOST``.
DEFAULT_COMMAND_PORTS: dict[str, int] = {
    "marketdata": 5560,
    "inference": 5561,
    "execution": 5562,
    "trainer": 5563,
    "monitor": 5564,
}


def command_endpoint(service: str, env: Mapping[str, str] | None = None) -> str:
    source = os.environ if env is None else env
    key = f"{service.upper()}_CMD_ENDPOINT"
    value = source.get(key, f"tcp://127.0.0.1:{DEFAULT_COMMAND_PORTS[service]}")
    if "://" not in value or not _valid_endpoint(value):
        raise ConfigError(
            f"{key}={value!r} is invalid: must be a ZeroMQ endpoint like tcp://host:port"
        )
    return value


def command_bind(service: str, bus: BusSettings, env: Mapping[str, str] | None = None) -> str:
    port = command_endpoint(service, env).rsplit(":", 1)[-1]
    return f"tcp://{bus.bind_host}:{port}"
