"""HMAC authentication for commands and model pushes.

The key is a random 32-byte secret in a file (``BUS_SECRET_FILE``), created atomically by the first
process that needs it and never baked into an image or committed. A signed object carries a fresh
``nonce`` and a timestamp; ``Verifier`` refuses a bad MAC, a stale timestamp and a replayed nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgspec

_canonical = msgspec.msgpack.Encoder(order="deterministic")


class AuthError(Exception):
    """A command or push failed authentication; the message says why (never the key)."""


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """Read the shared secret, creating it (mode 0600) if no process has yet."""
    key_path = Path(path)
    if key_path.exists():
        key = key_path.read_bytes().strip()
        if len(key) < 32:
            raise AuthError(f"secret file {key_path} is too short ({len(key)} bytes, need >= 32)")
        return key
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    try:
        # link() fails if another process created the file first: then theirs wins.
        os.link(tmp, key_path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return key_path.read_bytes().strip()


# Envelope fields the bus publisher stamps after signing; they are not part of what is signed.
_UNSIGNED = ("mac", "producer", "seq", "ts_publish")


def _body(obj: msgspec.Struct) -> bytes:
    fields = msgspec.structs.asdict(obj)
    for name in _UNSIGNED:
        fields.pop(name, None)
    return _canonical.encode(fields)


def sign(obj: Any, key: bytes) -> Any:
    """Return a copy of a frozen struct with a nonce (if empty) and its ``mac`` filled."""
    if not getattr(obj, "nonce", ""):
        obj = msgspec.structs.replace(obj, nonce=secrets.token_hex(16))
    mac = hmac.new(key, _body(obj), hashlib.sha256).hexdigest()
    return msgspec.structs.replace(obj, mac=mac)


class Verifier:
    """Checks MAC, freshness and single use of signed objects."""

    def __init__(self, key: bytes, max_age_s: float = 30.0, remember: int = 10_000) -> None:
        self._key = key
        self._max_age_ns = int(max_age_s * 1e9)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def verify(self, obj: Any, ts_ns: int) -> None:
        mac = getattr(obj, "mac", "")
        if not mac:
            raise AuthError("unsigned")
        # Hostile input must fail here as an AuthError, never as an exception from hmac or the
        # canonical encoder (a non-ASCII mac, or nested args whose keys cannot be ordered).
        if not isinstance(mac, str) or len(mac) != 64 or not mac.isascii():
            raise AuthError("bad signature")
        try:
            body = _body(obj)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise AuthError(f"cannot be canonicalised: {type(exc).__name__}") from None
        expected = hmac.new(self._key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            raise AuthError("bad signature")
        if not isinstance(ts_ns, int):
            raise AuthError("bad timestamp")
        age = time.time_ns() - ts_ns
        if abs(age) > self._max_age_ns:
            raise AuthError(f"stale: {age / 1e9:.1f}s old")
        nonce = getattr(obj, "nonce", "")
        if nonce in self._seen:
            raise AuthError("replayed nonce")
        self._seen[nonce] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
