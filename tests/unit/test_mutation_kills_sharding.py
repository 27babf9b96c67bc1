"""inference.sharding: tests written against mutants that survived the first mutmut run.

Expected values come from the module doc, not from the code: the timeout is 3 heartbeats (2 when
3 plus one heartbeat do not fit in a bar), the grace 2 heartbeats; a peer is live until it has
been silent for longer than the timeout (``expire`` forgets it then, not before, so it is live at
exactly the timeout); the score is ``blake2b(symbol NUL replica)`` (8 bytes, big-endian: the
numbers below were computed with hashlib alone, so every replica, of any version, agrees on them).
"""

from __future__ import annotations

import pytest
from inference.sharding import Sharding, handover_timing, owner, replica_id, score

from shared.config import ConfigError

pytestmark = pytest.mark.unit


def bar(seconds: float) -> dict[str, str]:
    return {"INFERENCE_SHARD_BAR_INTERVAL_S": str(seconds)}


def sharding(me: str, symbols: set[str], now: float = 0.0) -> Sharding:
    return Sharding(me=me, started=now, join_grace_s=2.0, peer_timeout_s=3.0, symbols=symbols)


# ---------------------------------------------------------------- timing at start


def test_the_bar_interval_bound_is_one_week_inclusive() -> None:
    week = 604_800  # seven days in seconds
    assert handover_timing(1.0, env=bar(week)).bar_interval_s == week
    assert handover_timing(1.0, env=bar(20_000)).bar_interval_s == 20_000
    with pytest.raises(
        ConfigError, match=r"INFERENCE_SHARD_BAR_INTERVAL_S: must be in \[0, 604800\]"
    ):
        handover_timing(1.0, env=bar(week + 1))


def test_timeout_and_grace_scale_with_a_heartbeat_other_than_one_second() -> None:
    t = handover_timing(0.5, env={})
    assert (t.peer_timeout_s, t.join_grace_s) == (1.5, 1.0)  # 3 x 0.5, 2 x 0.5
    t = handover_timing(4.0, env={})
    assert (t.peer_timeout_s, t.join_grace_s) == (12.0, 8.0)


def test_the_refusals_say_why_and_the_heartbeat_that_would_fit() -> None:
    with pytest.raises(ConfigError) as short:
        handover_timing(1.0, peer_timeout_s=0.5, env={})
    assert str(short.value) == (
        "INFERENCE_PEER_TIMEOUT_S=0.5: must exceed BUS_HEARTBEAT_INTERVAL_S=1.0"
        " (a live replica would lose its symbols between two heartbeats)"
    )
    # bars every 2 s need heartbeats of at most 2 / 3 s; the peer timeout is not named when it
    # was derived (only the heartbeat can be changed then)
    with pytest.raises(ConfigError) as derived:
        handover_timing(1.0, env=bar(2))
    assert str(derived.value).endswith("(now 1) to at most 0.667")
    with pytest.raises(ConfigError) as explicit:
        handover_timing(0.2, peer_timeout_s=2.0, env=bar(2))
    assert str(explicit.value).endswith("(now 0.2) to at most 0.667 or INFERENCE_PEER_TIMEOUT_S")


# ---------------------------------------------------------------- ids and scores


def test_replica_id_is_everything_after_the_first_at_sign() -> None:
    assert replica_id("r1") == "r1"  # no producer prefix: the id itself
    assert replica_id("inference@host@2:ab") == "host@2:ab"


def test_scores_are_blake2b_of_eight_bytes_big_endian() -> None:
    assert score("AAPL", "r1") == 11_811_383_142_414_489_401  # a3ea76637da71739
    assert score("AAPL", "r2") == 18_178_760_363_763_875_568  # fc47ee3c5318bef0
    assert score("MSFT", "r1") == 1_170_736_954_550_502_591  # 103f4b0ead67c4bf
    assert owner("AAPL", {"r1", "r2"}) == "r2"


# ---------------------------------------------------------------- membership


def test_start_keeps_the_replica_id_so_its_own_heartbeat_is_not_a_peer() -> None:
    s = Sharding.start("a", 0.0, handover_timing(1.0, env={}))
    assert s.me == "a"
    assert s.on_heartbeat("inference@a", {"serves": ["AAPL"]}, 1.0) is False
    assert s.peers == {}


def test_on_heartbeat_says_whether_anything_changed() -> None:
    s = sharding("a", set())
    assert s.on_heartbeat("inference@b", {"serves": ["X"]}, 1.0) is True  # a new peer
    assert s.on_heartbeat("inference@b", {"serves": ["X"]}, 1.5) is False  # the same again
    assert s.peers["b"].last_seen == 1.5
    assert s.on_heartbeat("inference@b", {"serves": ["X", "Y"]}, 2.0) is True  # serves only
    assert s.on_heartbeat("inference@b", {"serves": ["X", "Y"], "joining": True}, 2.5) is True
    assert s.on_heartbeat("inference@c", {"leaving": True}, 3.0) is False  # never heard of
    assert s.on_heartbeat("inference@b", {"leaving": True}, 3.0) is True
    assert s.peers == {}


def test_a_peer_is_live_at_exactly_the_timeout_and_keeps_its_symbols() -> None:
    """expire keeps a peer silent for exactly the timeout, so its claims must still count: the
    replica may not acquire a symbol the peer serves (both would serve it)."""
    s = sharding("a", {"X"})
    s.on_heartbeat("inference@b", {"serves": ["X"]}, 10.0)
    assert not s.expire(13.0) and set(s.live_peers(13.0)) == {"b"}
    assert not s.reconcile(13.0).acquired and s.serves == set()
    assert s.expire(13.5)
    assert s.reconcile(13.5).acquired == ["X"]


def test_the_join_grace_ends_at_exactly_its_length() -> None:
    s = sharding("a", {"X"}, now=0.0)
    assert s.joining(1.99) and not s.joining(2.0)
    assert s.reconcile(2.0).acquired == ["X"]


def test_a_claim_by_a_joining_peer_that_outranks_this_replica_is_given_up() -> None:
    """Rule 5 where the views disagree: the peer is not a member (joining), so this replica is
    still every symbol's desired owner, yet it releases what the claiming peer outranks it on."""
    symbols = {f"S{i:02d}" for i in range(40)}
    a = sharding("a", set(symbols))
    a.reconcile(2.5)
    assert a.serves == symbols
    b_wins = {s for s in symbols if score(s, "b") > score(s, "a")}
    assert b_wins and b_wins != symbols
    a.on_heartbeat("inference@b", {"serves": sorted(symbols), "joining": True}, 2.6)
    assert set(a.reconcile(2.6).released) == b_wins
    assert a.serves == symbols - b_wins


# ---------------------------------------------------------------- signals, hand-overs, fences


def test_the_last_signal_seen_only_moves_forward_per_symbol() -> None:
    s = sharding("a", set())
    s.note_signal("X", 0)  # the earliest valid close (validate: ts >= 0) still counts
    assert s.last_signal_ts == {"X": 0}
    s.note_signal("X", 200)
    s.note_signal("Y", 50)
    s.note_signal("X", 100)  # older: X keeps 200
    assert s.last_signal_ts == {"X": 200, "Y": 50}


def test_handovers_count_symbols_acquired_after_a_signal_was_seen() -> None:
    s = sharding("a", {"X", "Y", "Z"})
    s.note_signal("X", 100)
    s.note_signal("Z", 100)
    s.reconcile(2.5)  # X and Z had signals (another replica served them), Y never did
    assert s.serves == {"X", "Y", "Z"} and s.handovers == 2


def test_every_fence_is_counted() -> None:
    s = sharding("a", set())
    s.heartbeat_sent(0.0)
    assert s.fence(3.5) == []
    s.heartbeat_sent(3.5)
    assert s.fence(7.0) == []
    assert s.self_fences == 2
