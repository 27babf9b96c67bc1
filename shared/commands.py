"""Every command a service answers: its typed arguments and who may send it.

A command's ``args`` arrive as a free msgpack map; before a handler sees them they are converted to
the command's ``msgspec.Struct`` here (unknown keys, wrong types and out-of-range values are refused
with the field's name), and the sender's authenticated identity is checked against ``RIGHTS``.
A command missing from ``ARGS`` takes no arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

Text = Annotated[str, msgspec.Meta(max_length=256)]
Path_ = Annotated[str, msgspec.Meta(max_length=1024)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class _Args(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class NoArgs(_Args, frozen=True, kw_only=True):
    pass


class KillArgs(_Args, frozen=True, kw_only=True):
    reason: Text = ""


class RearmArgs(_Args, frozen=True, kw_only=True):
    clear_daily_loss: bool = False


class ReduceOnlyArgs(_Args, frozen=True, kw_only=True):
    on: bool | None = None


class FlattenArgs(_Args, frozen=True, kw_only=True):
    reason: Text = "manual"


class SinceArgs(_Args, frozen=True, kw_only=True):
    since_ns: Annotated[int, msgspec.Meta(ge=0)] = 0


class LimitArgs(_Args, frozen=True, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100


class SnapshotArgs(_Args, frozen=True, kw_only=True):
    symbol: Annotated[str, msgspec.Meta(max_length=24)] = ""
    n: Count = 0


class InferencePushArgs(_Args, frozen=True, kw_only=True):
    path: Path_ = ""
    version: Text = ""
    sha256: Annotated[str, msgspec.Meta(max_length=64)] = ""


class VersionArgs(_Args, frozen=True, kw_only=True):
    version: Text = ""


class ForceArgs(_Args, frozen=True, kw_only=True):
    force: bool = False


class TrainArgs(_Args, frozen=True, kw_only=True):
    profile: Text = ""
    from_tune: Path_ = ""
    # hyperparameters as `make train --set` takes them: scalars, or lists of them (hiddens=[64,64])
    overrides: dict[Text, str | int | float | bool | list[str | int | float | bool]] = {}
    force: bool = False
    push: bool | None = None


class TuneArgs(_Args, frozen=True, kw_only=True):
    profile: Text = ""
    samples: Count | None = None
    seed: Count | None = None
    pipeline: bool = False
    force: bool = False


class TrainerPushArgs(_Args, frozen=True, kw_only=True):
    version: Text = ""
    path: Path_ = ""
    force: bool = False


class RetrainArgs(_Args, frozen=True, kw_only=True):
    window: Annotated[str, msgspec.Meta(max_length=16)] = ""  # e.g. 180d; default the setting's


# (service, command) -> argument type
ARGS: Mapping[tuple[str, str], type[_Args]] = {
    ("execution", "kill"): KillArgs,
    ("execution", "rearm"): RearmArgs,
    ("execution", "reduce_only"): ReduceOnlyArgs,
    ("execution", "flatten"): FlattenArgs,
    ("execution", "fills"): SinceArgs,
    ("execution", "orders"): LimitArgs,
    ("marketdata", "snapshot"): SnapshotArgs,
    ("inference", "push_model"): InferencePushArgs,
    ("inference", "rollback"): VersionArgs,
    ("inference", "shadow_load"): InferencePushArgs,
    ("trainer", "train"): TrainArgs,
    ("trainer", "tune"): TuneArgs,
    ("trainer", "push_model"): TrainerPushArgs,
    ("trainer", "rollback"): VersionArgs,
    ("trainer", "shadow"): TrainerPushArgs,
    ("trainer", "promote_shadow"): ForceArgs,
    ("trainer", "retrain"): RetrainArgs,
}

OPERATOR = frozenset({"operator"})
MODEL_PUSHERS = frozenset({"operator", "trainer"})

# (service, command) -> identities allowed; a command not listed is read-only: any identity.
RIGHTS: Mapping[tuple[str, str], frozenset[str]] = {
    ("execution", "kill"): OPERATOR,
    ("execution", "rearm"): OPERATOR,
    ("execution", "reduce_only"): OPERATOR,
    ("execution", "flatten"): OPERATOR,
    ("inference", "push_model"): MODEL_PUSHERS,
    ("inference", "rollback"): MODEL_PUSHERS,
    ("inference", "shadow_load"): MODEL_PUSHERS,
    ("inference", "shadow_promote"): MODEL_PUSHERS,
    ("inference", "shadow_drop"): MODEL_PUSHERS,
    ("trainer", "train"): OPERATOR,
    ("trainer", "tune"): OPERATOR,
    ("trainer", "cancel"): OPERATOR,
    ("trainer", "push_model"): OPERATOR,
    ("trainer", "rollback"): OPERATOR,
    ("trainer", "shadow"): OPERATOR,
    ("trainer", "promote_shadow"): OPERATOR,
    ("trainer", "drop_shadow"): OPERATOR,
    ("trainer", "retrain"): OPERATOR,
}


def may_send(service: str, command: str, identity: str) -> bool:
    allowed = RIGHTS.get((service, command))
    return allowed is None or identity in allowed


def typed_args(service: str, command: str, args: Any) -> dict[str, Any]:
    """Convert ``args`` to the command's struct (raises ``msgspec.ValidationError`` naming the
    field) and hand the handler a plain dict with every default filled in."""
    kind = ARGS.get((service, command), NoArgs)
    converted = msgspec.convert(args, kind)
    return msgspec.structs.asdict(converted)
