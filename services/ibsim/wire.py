"""TWS API framing and field encoding, both directions.

A message is a 4-byte big-endian length followed by text fields, each terminated by NUL. The very
first bytes a client sends are ``API\\0`` followed by one such frame holding ``v<min>..<max>``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

API_PREFIX = b"API\x00"
MAX_FRAME_BYTES = 0xFFFFFF  # TWS refuses bigger messages; a longer length means a broken client

UNSET_INTEGER = 2**31 - 1  # the API's "no value" markers (ibapi / ib_async util)
UNSET_DOUBLE = 1.7976931348623157e308

Field = str | int | float | bool | None


class ProtocolError(Exception):
    """The peer sent bytes that are not the TWS API protocol; the connection must be closed."""


class FrameTooLarge(ProtocolError):
    """A frame declared more bytes than the limit; refused before any of it is buffered."""


def format_field(value: Field) -> str:
    """One value as TWS writes it: bools as 1/0, None as empty, floats without exponent noise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "Infinite"
        if value == UNSET_DOUBLE:
            return "1.7976931348623157E308"  # TWS's spelling of "unset" (commission reports)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))  # "100" not "100.0": decoders that int() a field accept it
        return repr(value)
    return value


def encode_frame(fields: Iterable[Field]) -> bytes:
    """Length-prefixed message from fields."""
    payload = "".join(format_field(f) + "\x00" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def parse_version_range(text: str) -> tuple[int, int]:
    """``v157..178`` (optionally followed by `` <connect options>``) -> (157, 178)."""
    spec = text.split(" ", 1)[0]
    if not spec.startswith("v"):
        raise ProtocolError(f"bad version range {text!r}")
    low, sep, high = spec[1:].partition("..")
    try:
        return (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise ProtocolError(f"bad version range {text!r}") from None


class FrameReader:
    """Incremental decoder: feed bytes, get complete messages as lists of text fields."""

    def __init__(
        self, expect_handshake: bool = True, max_frame_bytes: int = MAX_FRAME_BYTES
    ) -> None:
        self._buffer = bytearray()
        self._awaiting_prefix = expect_handshake
        self._max_frame_bytes = min(max_frame_bytes, MAX_FRAME_BYTES)

    @property
    def partial(self) -> bool:
        """True while bytes of an unfinished prefix or frame wait for the rest."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[list[str]]:
        self._buffer += data
        messages: list[list[str]] = []
        if self._awaiting_prefix:
            if len(self._buffer) < len(API_PREFIX):
                return messages
            if self._buffer[: len(API_PREFIX)] != API_PREFIX:
                raise ProtocolError("connection did not start with API\\0")
            del self._buffer[: len(API_PREFIX)]
            self._awaiting_prefix = False
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from(">I", self._buffer)
            if length > self._max_frame_bytes:
                # refused on the length alone: never buffer towards a frame we would not accept
                raise FrameTooLarge(f"frame of {length} bytes (limit {self._max_frame_bytes})")
            end = 4 + length
            if len(self._buffer) < end:
                break
            text = bytes(self._buffer[4:end]).decode(errors="replace")
            del self._buffer[:end]
            fields = text.split("\x00")
            if fields and fields[-1] == "":
                fields.pop()  # every field ends with NUL, so the split leaves one empty tail
            messages.append(fields)
        return messages


class FieldReader:
    """Cursor over one incoming message's fields with the API's empty-means-default rules."""

    def __init__(self, fields: list[str], start: int = 0) -> None:
        self.fields = fields
        self.pos = start

    def text(self) -> str:
        if self.pos >= len(self.fields):
            raise ProtocolError(f"message {self.fields[:1]} ended after {self.pos} fields")
        value = self.fields[self.pos]
        self.pos += 1
        return value

    def integer(self, default: int = 0) -> int:
        text = self.text()
        if not text:
            return default
        try:
            return int(float(text)) if "." in text else int(text)
        except ValueError:
            raise ProtocolError(f"field {self.pos - 1} is not an integer: {text!r}") from None

    def number(self) -> float | None:
        """Empty or the API's unset marker read as None."""
        text = self.text()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ProtocolError(f"field {self.pos - 1} is not a number: {text!r}") from None
        return None if value >= UNSET_DOUBLE else value

    def flag(self) -> bool:
        text = self.text()
        return bool(int(text)) if text else False

    def skip(self, count: int) -> None:
        self.pos += count

    @property
    def remaining(self) -> int:
        return len(self.fields) - self.pos
