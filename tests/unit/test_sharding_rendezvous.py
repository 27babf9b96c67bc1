"""The rendezvous bookkeeping of ``inference.sharding``: deterministic owners, minimal movement,
the hand-over rule (release at once, acquire only when no live peer claims), expiry, leaving."""

from __future__ import annotations

import pytest
from inference.sharding import Sharding, owner, replica_id, score

pytestmark = pytest.mark.unit

SYMBOLS = {f"S{i:03d}" for i in range(200)}


def sharding(me: str, now: float = 0.0) -> Sharding:
    return Sharding(me=me, started=now, join_grace_s=2.0, peer_timeout_s=3.0, symbols=set(SYMBOLS))


def hb(serves: set[str] | None = None, joining: bool = False, leaving: bool = False) -> dict:
    return {"serves": sorted(serves or ()), "joining": joining, "leaving": leaving}


def test_replica_id_is_the_producer_suffix_and_scores_are_stable() -> None:
    assert replica_id("inference@host:12:ab01") == "host:12:ab01"
    assert score("AAPL", "r1") == score("AAPL", "r1")  # not Python's salted hash()
    assert score("AAPL", "r1") != score("AAPL", "r2")
    assert owner("AAPL", set()) is None


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_symbol_has_exactly_one_owner(n: int) -> None:
    replicas = {f"r{i}" for i in range(n)}
    owners = {s: owner(s, replicas) for s in SYMBOLS}
    assert set(owners.values()) == replicas  # 200 symbols: everyone gets a share
    counts = [sum(o == r for o in owners.values()) for r in replicas]
    assert min(counts) > 200 / n / 2  # roughly balanced


def test_a_replica_joining_or_dying_moves_only_its_share() -> None:
    before = {s: owner(s, {"a", "b"}) for s in SYMBOLS}
    after = {s: owner(s, {"a", "b", "c"}) for s in SYMBOLS}
    moved = {s for s in SYMBOLS if before[s] != after[s]}
    assert moved and all(after[s] == "c" for s in moved)
    back = {s: owner(s, {"a", "b"}) for s in SYMBOLS}
    assert back == before
    dead_b = {s: owner(s, {"a", "c"}) for s in SYMBOLS}
    assert {s for s in SYMBOLS if dead_b[s] != after[s]} == {s for s in SYMBOLS if after[s] == "b"}


def test_nothing_is_served_during_the_join_grace_then_everything_alone() -> None:
    me = sharding("a")
    assert me.joining(1.0) and not me.reconcile(1.0)
    assert me.serves == set()
    changes = me.reconcile(2.5)
    assert set(changes.acquired) == SYMBOLS and me.serves == SYMBOLS


def test_hand_over_to_a_joining_peer_releases_first_then_the_peer_acquires() -> None:
    a, b = sharding("a"), sharding("b", now=10.0)
    a.reconcile(2.5)
    # b announces itself while joining: a keeps everything (b owns nothing yet)
    assert a.on_heartbeat("inference@b", hb(joining=True), 10.0)
    assert not a.reconcile(10.0)
    assert a.describe(10.0)["peers_joining"] == ["b"]  # a hand-over to b is still to come
    # b hears a (serving everything) during its grace, then ends it: it acquires nothing yet
    b.on_heartbeat("inference@a", hb(a.serves), 11.0)
    assert not b.reconcile(12.5).acquired
    assert not b.describe(12.5)["joining"] and a.describe(12.5)["peers_joining"] == ["b"]
    share = {s for s in SYMBOLS if owner(s, {"a", "b"}) == "b"}
    # a sees b past its grace: releases exactly b's share at once
    a.on_heartbeat("inference@b", hb(), 12.6)
    released = a.reconcile(12.6).released
    assert a.describe(12.6)["peers_joining"] == []
    assert set(released) == share and a.serves == SYMBOLS - share
    # b sees a's heartbeat without the share: acquires exactly it
    b.on_heartbeat("inference@a", hb(a.serves), 12.7)
    assert set(b.reconcile(12.7).acquired) == share
    assert a.serves.isdisjoint(b.serves) and a.serves | b.serves == SYMBOLS


def test_a_dead_peer_share_is_taken_only_after_its_heartbeat_expires() -> None:
    a = sharding("a")
    a.on_heartbeat("inference@b", hb({s for s in SYMBOLS if owner(s, {"a", "b"}) == "b"}), 0.0)
    a.reconcile(2.5)
    mine = set(a.serves)
    a.on_heartbeat("inference@b", hb(SYMBOLS - mine), 2.6)
    assert not a.expire(5.5) and not a.reconcile(5.5)
    assert a.expire(5.7)
    a.note_signal("S001", 123)
    assert set(a.reconcile(5.7).acquired) == SYMBOLS - mine and a.serves == SYMBOLS


def test_a_leaving_peer_is_dropped_at_once() -> None:
    a = sharding("a")
    a.on_heartbeat("inference@b", hb({"S000"}), 0.0)
    a.reconcile(2.5)
    assert "S000" not in a.serves
    assert a.on_heartbeat("inference@b", hb(leaving=True), 2.6)
    a.reconcile(2.6)
    assert a.serves == SYMBOLS


def test_a_conflict_is_resolved_by_score() -> None:
    a = sharding("a")
    a.reconcile(2.5)  # a alone: serves everything
    # b claims symbols it outranks a on (a view that disagreed): a gives exactly those back
    b_wins = {s for s in SYMBOLS if score(s, "b") > score(s, "a")}
    a.on_heartbeat("inference@b", hb(SYMBOLS), 2.6)
    assert set(a.reconcile(2.6).released) == b_wins
    assert a.serves == SYMBOLS - b_wins
