"""Deterministic sharding of symbols over inference replicas (``INFERENCE_SHARD_MODE=rendezvous``).

Membership. Every replica publishes ``hb.inference`` with ``detail.replica`` (its id: the suffix
of its bus producer id, ``inference@<host:pid:rand>`` -> ``<host:pid:rand>``; the CURVE identity
stays ``inference`` for all of them), ``detail.serves`` (the symbols it decides right now),
``detail.joining`` (still in its join grace) and, when it stops cleanly, ``detail.leaving``. A
replica counts a peer as live from its first heartbeat until ``peer_timeout_s`` (default three
heartbeat intervals) without one, or until the peer says it is leaving. Peers that are joining
are not counted in the assignment (they own nothing yet).

Assignment. The desired owner of a symbol is the live, non-joining replica with the highest
rendezvous score ``blake2b(symbol NUL replica)``: every replica with the same view computes the
same owner, and a replica joining or dying changes the owner only of the symbols whose top score
it holds (its share); every other symbol stays where it is.

Hand-over rule (what makes "served exactly once" hold):

1. Join grace: a new replica serves nothing for ``join_grace_s`` (default two heartbeat
   intervals) after its start; by then it has heard every live peer's heartbeat.
2. Release: a replica that is no longer a symbol's desired owner stops deciding it at once (the
   bar being handled is its last) and publishes a heartbeat without it immediately.
3. Acquire: a replica starts deciding a symbol it desires only when no live peer lists the
   symbol in ``serves`` (the previous owner announced the release, or its heartbeat expired).
   All bars, heartbeats and signals reach a replica through the same forwarder on one SUB
   socket, in the order the forwarder received them, so a replica that sees the release has
   already seen every signal the previous owner published for that symbol.
4. Catch-up: on acquiring, the replica re-warms the symbol from marketdata's snapshot (the
   feature window and the policy's position replayed, nothing published) except the bars that
   closed after the last signal seen for that symbol on the bus (from any replica): those are
   decided AND published, in order. So a bar that arrived between a release (or a death) and
   the acquisition still gets exactly one signal, late by at most the hand-over time, and a bar
   already signalled is never signalled again. With no signal ever seen for the symbol (a first
   start), nothing from the snapshot is published.
5. Conflict (a safety net for views that disagreed): when a live peer lists a symbol this
   replica serves and the peer's score is higher, this replica releases it.
6. Self-fence (a replica paused: SIGSTOP, a VM or ``docker pause``, a long GC or swap stall).
   A replica whose own last heartbeat (the last one it published, by its monotonic clock) is
   older than ``peer_timeout_s`` assumes its peers expired it and gave its share away (rules 3
   and 4: the successor has caught up and signalled the bars closed meanwhile). Before it
   decides any bar or publishes any heartbeat it releases everything, publishing nothing for
   those symbols (decisions queued and warm-ups in flight are dropped), forgets its peers, starts
   a new join grace as a new replica, announces the empty set at once and counts the fence
   (``self_fences``). It then re-joins by rules 1, 3 and 4: the bars, signals and heartbeats
   queued in its SUB socket during the pause are read during the grace (bars not served are
   filtered), so by the time it acquires a symbol again its last signal seen is the
   successor's, and the catch-up signals only what closed after it.

   Why the peers' own threshold: a peer stamps this replica's heartbeat when it receives it,
   after it was sent, so at any instant the age this replica counts for its last heartbeat is
   at least the age any peer counts. A peer can have expired it only if its own age exceeds
   ``peer_timeout_s`` as well (the same value: ``handover_timing`` derives it from the same
   settings on every replica). A replica merely slow (a busy host, a heartbeat late by less than
   the timeout) has been expired by nobody and keeps its symbols: no fence, no churn. Never
   before the first heartbeat (no peer has counted the replica yet). The sending time is
   recorded just before the heartbeat goes to the socket, so a pause between the two can only
   make the replica fence when it need not (two hand-overs, each caught up), never the opposite.

   Where: after a SIGCONT the event loop may wake the consumer (a receive batch of what queued
   up), the heartbeat task, the membership tick (which would otherwise find every peer silent,
   expire them all and take every symbol) or a warm-up whose snapshot reply arrived, in any
   order; the check is the first thing each of them does (``inference.membership``).

   What remains: a pause inside one receive batch, between the check and a signal's send (one
   synchronous handler), publishes that signal late after the successor has signalled the bar
   too; execution drops the doubled signal by its order reference (strategy, symbol, bar).

Hand-over time: a clean release or a clean stop (``leaving``) is handed over within one
heartbeat's trip; a replica killed without a word is handed over after ``peer_timeout_s`` (counted
from its last heartbeat) plus the membership tick and the symbol's warm-up, and the catch-up above
then signals what closed in between. For "no symbol unserved for more than one bar interval" that
must fit in a bar interval, so ``handover_timing`` derives the timeout from both intervals and
refuses a start where it cannot fit (``INFERENCE_SHARD_BAR_INTERVAL_S``, the wall-clock time
between two bars of a symbol: 60 for live 1-minute bars, 5 for the default replay pace of 0.2
bars/s; 0 = not declared, nothing checked):

* timeout = 3 heartbeats, or 2 when 3 do not leave one heartbeat interval (the warm-up and the
  catch-up's allowance) before the next bar; never under 2 heartbeats (a peer whose single
  heartbeat comes late on a busy host must not lose its symbols);
* refused when even 2 heartbeats + 1 do not fit: lower ``BUS_HEARTBEAT_INTERVAL_S`` (bars every
  2 s need heartbeats of at most 0.66 s).

Measured with three replica processes on a busy 2-core VM (``test_sharding_native``: 0.2 s
heartbeats, bars every 2 s, a replica SIGKILLed just before a bar): the dead replica's symbols got
their signal 0.53 s after the bar at worst.

A paused replica's share is handed over as a dead one's (after ``peer_timeout_s``); on resuming
it fences (rule 6) and takes its share back after its join grace plus one heartbeat's trip.

This module is pure bookkeeping (no sockets, no clock of its own: ``now`` is passed in), so it
is unit-tested directly; ``InferenceService`` wires it to the bus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared.config import ConfigError, from_env, require

# Heartbeats a silent peer is given by default, and the fewest it may be given.
TIMEOUT_HEARTBEATS = 3.0
MIN_TIMEOUT_HEARTBEATS = 2.0
# Heartbeat intervals kept free between the timeout and the next bar: the membership tick, the
# acquiring replica's heartbeat and the symbol's warm-up from the snapshot.
HANDOVER_MARGIN_HEARTBEATS = 1.0


class ShardTiming(msgspec.Struct, frozen=True, kw_only=True):
    """``INFERENCE_SHARD_BAR_INTERVAL_S`` [0]: wall seconds between two bars of a symbol (0: not
    declared; the hand-over is then not checked against it)."""

    bar_interval_s: float = 0.0

    def __post_init__(self) -> None:
        require(0 <= self.bar_interval_s <= 86_400 * 7, "bar_interval_s", "must be in [0, 604800]")


@dataclass(frozen=True)
class HandoverTiming:
    peer_timeout_s: float
    join_grace_s: float
    bar_interval_s: float  # 0: not declared


def handover_timing(
    heartbeat_interval_s: float,
    peer_timeout_s: float = 0.0,
    join_grace_s: float = 0.0,
    env: Mapping[str, str] | None = None,
) -> HandoverTiming:
    """The peer timeout and join grace (0: derived, see the module doc), checked at start
    against the declared bar interval; ``ConfigError`` names the key to change."""
    bar = from_env(ShardTiming, "INFERENCE_SHARD_", env).bar_interval_s
    hb = heartbeat_interval_s
    margin = HANDOVER_MARGIN_HEARTBEATS * hb
    grace = join_grace_s or 2.0 * hb
    if peer_timeout_s:
        timeout = peer_timeout_s
        if timeout <= hb:
            raise ConfigError(
                f"INFERENCE_PEER_TIMEOUT_S={timeout}: must exceed BUS_HEARTBEAT_INTERVAL_S={hb}"
                " (a live replica would lose its symbols between two heartbeats)"
            )
    else:
        timeout = TIMEOUT_HEARTBEATS * hb
        if bar and timeout + margin > bar:
            timeout = MIN_TIMEOUT_HEARTBEATS * hb
    if bar and timeout + margin > bar:
        raise ConfigError(
            f"INFERENCE_SHARD_BAR_INTERVAL_S={bar}: a killed replica's symbols are taken over"
            f" {timeout:g} s (peer timeout) + {margin:g} s (one heartbeat: tick, warm-up) after"
            f" its last heartbeat, more than one bar interval; lower BUS_HEARTBEAT_INTERVAL_S"
            f" (now {hb:g}) to at most {bar / (MIN_TIMEOUT_HEARTBEATS + 1):.3g}"
            + (" or INFERENCE_PEER_TIMEOUT_S" if peer_timeout_s else "")
        )
    return HandoverTiming(peer_timeout_s=timeout, join_grace_s=grace, bar_interval_s=bar)


def replica_id(producer: str) -> str:
    """The replica id is the producer id's suffix after ``@`` (unique per process start)."""
    return producer.split("@", 1)[1] if "@" in producer else producer


def score(symbol: str, replica: str) -> int:
    """Rendezvous weight of ``replica`` for ``symbol`` (stable across processes and hosts)."""
    digest = hashlib.blake2b(f"{symbol}\0{replica}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(symbol: str, replicas: set[str] | frozenset[str]) -> str | None:
    """The replica with the highest score for ``symbol`` (ties broken by id); None if none."""
    if not replicas:
        return None
    return max(replicas, key=lambda r: (score(symbol, r), r))


@dataclass
class Peer:
    replica: str
    last_seen: float
    serves: frozenset[str] = frozenset()
    joining: bool = False


@dataclass
class Changes:
    acquired: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.acquired or self.released)


@dataclass
class Sharding:
    """One replica's view of the membership and of which symbols it serves."""

    me: str
    started: float
    join_grace_s: float
    peer_timeout_s: float
    peers: dict[str, Peer] = field(default_factory=dict)
    symbols: set[str] = field(default_factory=set)  # every symbol heard of (bars, status, peers)
    serves: set[str] = field(default_factory=set)
    last_signal_ts: dict[str, int] = field(default_factory=dict)  # symbol -> close ts, any replica
    handovers: int = 0  # symbols acquired after the join grace from a peer (or a dead peer)
    # monotonic time of the last heartbeat this replica published (None: none yet, so no peer
    # can have counted it, nor expired it)
    last_heartbeat: float | None = None
    self_fences: int = 0  # rule 6: pauses past the peer timeout, everything released

    def heartbeat_sent(self, now: float) -> None:
        self.last_heartbeat = now

    def stale(self, now: float) -> bool:
        """Rule 6's condition: this replica's own last heartbeat is older than the peer timeout,
        so its peers may have expired it (never true before its first heartbeat)."""
        last = self.last_heartbeat
        return last is not None and now - last > self.peer_timeout_s

    def fence(self, now: float) -> list[str] | None:
        """Rule 6: when ``stale``, release every symbol and start over as a new replica (a new
        join grace, no peer known until heard again); the symbols released (maybe none), or
        None when not stale. The caller publishes nothing for them and announces the empty set
        at once (``heartbeat_sent``)."""
        if not self.stale(now):
            return None
        released = sorted(self.serves)
        self.serves.clear()
        self.peers.clear()  # their last_seen predates the pause: hear them again first
        self.started = now
        self.self_fences += 1
        return released

    def joining(self, now: float) -> bool:
        return now - self.started < self.join_grace_s

    def live_peers(self, now: float) -> dict[str, Peer]:
        return {r: p for r, p in self.peers.items() if now - p.last_seen <= self.peer_timeout_s}

    def members(self, now: float) -> set[str]:
        """Replicas the assignment is computed over: live, past their join grace."""
        members = {r for r, p in self.live_peers(now).items() if not p.joining}
        if not self.joining(now):
            members.add(self.me)
        return members

    def on_heartbeat(self, producer: str, detail: dict[str, Any], now: float) -> bool:
        """Record a peer's heartbeat; True when the membership or a peer's set changed."""
        replica = replica_id(producer)
        if replica == self.me:
            return False
        if detail.get("leaving"):
            return self.peers.pop(replica, None) is not None
        serves = frozenset(str(s) for s in detail.get("serves") or ())
        joining = bool(detail.get("joining"))
        old = self.peers.get(replica)
        self.peers[replica] = Peer(replica, now, serves, joining)
        self.symbols |= serves
        return old is None or old.serves != serves or old.joining != joining

    def expire(self, now: float) -> bool:
        """Forget peers silent for longer than the timeout; True if any was forgotten."""
        dead = [r for r, p in self.peers.items() if now - p.last_seen > self.peer_timeout_s]
        for replica in dead:
            del self.peers[replica]
        return bool(dead)

    def note_signal(self, symbol: str, close_ts: int) -> None:
        if close_ts > self.last_signal_ts.get(symbol, -1):
            self.last_signal_ts[symbol] = close_ts

    def reconcile(self, now: float) -> Changes:
        """Apply rules 2, 3 and 5 of the module doc over every known symbol."""
        changes = Changes()
        if self.joining(now):
            return changes
        members = self.members(now)
        live = self.live_peers(now)
        claimed: dict[str, list[str]] = {}
        for peer in live.values():
            for symbol in peer.serves:
                claimed.setdefault(symbol, []).append(peer.replica)
        for symbol in sorted(self.symbols):
            mine = owner(symbol, members) == self.me
            others = claimed.get(symbol, [])
            if symbol in self.serves:
                outranked = any(score(symbol, r) > score(symbol, self.me) for r in others)
                if not mine or outranked:
                    self.serves.discard(symbol)
                    changes.released.append(symbol)
            elif mine and not others:
                self.serves.add(symbol)
                changes.acquired.append(symbol)
                if symbol in self.last_signal_ts:
                    self.handovers += 1
        return changes

    @classmethod
    def start(cls, me: str, now: float, timing: HandoverTiming) -> Sharding:
        return cls(
            me=me, started=now, join_grace_s=timing.join_grace_s,
            peer_timeout_s=timing.peer_timeout_s,
        )  # fmt: skip

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "replica": self.me,
            "peer_timeout_s": self.peer_timeout_s,
            "joining": self.joining(now),
            "serves": sorted(self.serves),
            "peers": {r: sorted(p.serves) for r, p in sorted(self.live_peers(now).items())},
            # peers still in their join grace as this replica last heard: a hand-over to them
            # is still to come once their first heartbeat past the grace arrives
            "peers_joining": sorted(r for r, p in self.live_peers(now).items() if p.joining),
            "handovers": self.handovers,
            "self_fences": self.self_fences,
        }
