"""CURVE key pairs, one per identity, and who may publish what.

Every process on the bus authenticates with ZeroMQ's CURVE mechanism: the forwarder and each
command server are CURVE servers, every other socket is a CURVE client. An identity is a name
(``marketdata``, ``execution``, ``operator`` ...) and one key pair stored as
``<keys_dir>/<name>.key_secret`` (mode 0600, ZeroMQ certificate format) beside its public half
``<name>.key``. Servers admit a client only when its public key is one of the ``*.key`` files, and
know it by that file's name: that name, never a string inside a message, is who sent a message.

Keys are made on first start by whichever process needs them first (``ensure_keys``, atomic: two
processes starting together end with the same keys) or on purpose with ``python -m shared.keys``.
Rotate by deleting the folder (or one pair) and restarting the stack.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

# Every identity the stack knows. The simulator only subscribes; the operator only sends commands.
IDENTITIES: tuple[str, ...] = (
    "bus",
    "marketdata",
    "inference",
    "execution",
    "trainer",
    "monitor",
    "ibsim",
    "operator",
)

# Topics each identity may publish. An entry ending in "." is a prefix, any other is exact.
PUBLISH_RIGHTS: Mapping[str, tuple[str, ...]] = {
    "bus": ("hb.bus",),
    "marketdata": ("bar.", "hb.marketdata"),
    "inference": ("signal.", "shadow.", "model.status", "hb.inference"),
    "execution": ("order.", "fill.", "position.", "hb.execution"),
    "trainer": ("model.updated", "hb.trainer"),
    "monitor": ("pnl.", "hb.monitor"),
    "ibsim": (),
    "operator": (),
}


def may_publish(identity: str, topic: str) -> bool:
    for allowed in PUBLISH_RIGHTS.get(identity, ()):
        if topic == allowed or (allowed.endswith(".") and topic.startswith(allowed)):
            return True
    return False


def producer_matches(identity: str, producer: str) -> bool:
    """A producer id names its identity: ``execution@host:pid:rand`` or ``trainer-pipeline@...``."""
    name = producer.split("@", 1)[0]
    return name == identity or name.startswith(identity + "-")


class KeyFileError(Exception):
    """A key file is missing or unreadable; the message names the file."""


def _write_pair(keys_dir: Path, name: str) -> None:
    """Create ``name``'s pair unless it exists; the first of two racing processes wins."""
    secret_path = keys_dir / f"{name}.key_secret"
    public_path = keys_dir / f"{name}.key"
    if not secret_path.exists():
        with tempfile.TemporaryDirectory(dir=keys_dir, prefix=f".{name}.") as tmp:
            _, tmp_secret = zmq.auth.create_certificates(tmp, name)
            os.chmod(tmp_secret, 0o600)
            with contextlib.suppress(FileExistsError):  # another process made it first: theirs wins
                os.link(tmp_secret, secret_path)
    if not public_path.exists():
        public, _ = zmq.auth.load_certificate(secret_path)
        with tempfile.TemporaryDirectory(dir=keys_dir, prefix=f".{name}.") as tmp:
            tmp_public = Path(tmp) / f"{name}.key"
            tmp_public.write_text(
                '#   ZeroMQ CURVE public certificate\nmetadata\ncurve\n    public-key = "'
                + public.decode()
                + '"\n'
            )
            os.replace(tmp_public, public_path)


def ensure_keys(keys_dir: str | os.PathLike[str], names: Iterable[str] = IDENTITIES) -> Path:
    """Make the key pairs that do not exist yet; existing ones are never changed.

    When every pair exists nothing is written, so a read-only mount of the folder (Docker: the
    secrets volume, filled by the one-shot ``keygen`` service) works as it is.
    """
    folder = Path(keys_dir)
    wanted = list(names)
    if all((folder / f"{name}.key_secret").exists() for name in wanted) and all(
        (folder / f"{name}.key").exists() for name in wanted
    ):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in wanted:
        _write_pair(folder, name)
    return folder


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # z85, 40 bytes
    secret: bytes


class KeyRing:
    """The public keys of every identity, and this process's own secret key."""

    def __init__(self, keys_dir: str | os.PathLike[str]) -> None:
        self.keys_dir = Path(keys_dir)
        self._by_public: dict[bytes, str] = {}
        self._public_by_name: dict[str, bytes] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read the public keys (a rotated or newly made key is admitted without a restart)."""
        by_public: dict[bytes, str] = {}
        for path in sorted(self.keys_dir.glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(path)
            except (OSError, ValueError):
                continue
            by_public[public] = path.stem
        self._by_public = by_public
        self._public_by_name = {name: public for public, name in by_public.items()}

    def identity_of(self, public_z85: bytes) -> str | None:
        name = self._by_public.get(public_z85)
        if name is None:
            self.reload()
            name = self._by_public.get(public_z85)
        return name

    def public(self, name: str) -> bytes:
        public = self._public_by_name.get(name)
        if public is None:
            self.reload()
            public = self._public_by_name.get(name)
        if public is None:
            raise KeyFileError(f"no public key for {name!r} in {self.keys_dir}")
        return public

    def pair(self, name: str) -> KeyPair:
        path = self.keys_dir / f"{name}.key_secret"
        try:
            public, secret = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read the key pair {path}: {exc}") from None
        if secret is None:
            raise KeyFileError(f"{path} holds no secret key")
        return KeyPair(public=public, secret=secret)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.keys",
        description="Create the bus's CURVE key pairs that do not exist yet (one per identity).",
    )
    parser.add_argument(
        "--dir", help="key folder (default: BUS_KEYS_DIR or beside BUS_SECRET_FILE)"
    )
    args = parser.parse_args(argv)
    from shared.config import ConfigError, bus_settings

    try:
        folder = args.dir or bus_settings().resolved_keys_dir
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    path = ensure_keys(folder)
    print(f"bus keys in {path}: {', '.join(IDENTITIES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
