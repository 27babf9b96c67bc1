"""The sharding hand-over timing: the peer timeout derived from the heartbeat and the bar interval,
and a start refused (naming the key) where a killed replica's symbols could wait longer than a bar.
"""

from __future__ import annotations

import pytest
from inference.sharding import Sharding, handover_timing

from shared.config import ConfigError

pytestmark = pytest.mark.unit


def bar(seconds: float) -> dict[str, str]:
    return {"INFERENCE_SHARD_BAR_INTERVAL_S": str(seconds)}


def test_defaults_are_three_heartbeats_and_two_of_grace_when_no_bar_interval_is_declared() -> None:
    t = handover_timing(1.0, env={})
    assert (t.peer_timeout_s, t.join_grace_s, t.bar_interval_s) == (3.0, 2.0, 0.0)


def test_three_heartbeats_kept_when_they_fit_in_a_bar_with_a_heartbeat_to_spare() -> None:
    assert handover_timing(1.0, env=bar(60)).peer_timeout_s == 3.0  # live 1-minute bars
    assert handover_timing(1.0, env=bar(5)).peer_timeout_s == 3.0  # the default replay pace
    assert handover_timing(1.0, env=bar(4)).peer_timeout_s == 3.0  # 3 + 1 == 4: just fits


def test_two_heartbeats_when_three_do_not_fit() -> None:
    assert handover_timing(1.0, env=bar(3.5)).peer_timeout_s == 2.0
    assert handover_timing(0.2, env=bar(0.7)).peer_timeout_s == pytest.approx(0.4)


def test_refused_at_start_when_even_two_heartbeats_do_not_fit() -> None:
    with pytest.raises(ConfigError, match=r"INFERENCE_SHARD_BAR_INTERVAL_S=2\.0.*HEARTBEAT"):
        handover_timing(1.0, env=bar(2))
    with pytest.raises(ConfigError, match="INFERENCE_PEER_TIMEOUT_S"):
        handover_timing(0.2, peer_timeout_s=2.0, env=bar(2))  # explicit, and too long


def test_an_explicit_timeout_must_exceed_one_heartbeat() -> None:
    with pytest.raises(ConfigError, match=r"INFERENCE_PEER_TIMEOUT_S=1\.0"):
        handover_timing(1.0, peer_timeout_s=1.0, env={})
    assert handover_timing(1.0, peer_timeout_s=1.5, join_grace_s=0.5, env={}).join_grace_s == 0.5


def test_a_bad_bar_interval_names_its_key() -> None:
    with pytest.raises(ConfigError, match="INFERENCE_SHARD_BAR_INTERVAL_S"):
        handover_timing(1.0, env=bar(-1))
    with pytest.raises(ConfigError, match="INFERENCE_SHARD_BAR_INTERVAL_S"):
        handover_timing(1.0, env={"INFERENCE_SHARD_BAR_INTERVAL_S": "soon"})


def test_a_silent_peer_expires_after_the_derived_timeout_not_before() -> None:
    timing = handover_timing(1.0, env=bar(3.5))  # 2 s
    s = Sharding.start("me", 0.0, timing)
    s.on_heartbeat("inference@peer", {"serves": ["AAPL"]}, now=10.0)
    assert not s.expire(12.0) and "peer" in s.peers
    assert s.expire(12.01) and "peer" not in s.peers
    assert s.describe(12.01)["peer_timeout_s"] == 2.0


def test_the_inference_process_refuses_an_impossible_bar_interval_with_a_config_error(
    tmp_path,
) -> None:
    """Not a traceback: exit code 2 and one ``config_error`` line naming the key."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "INFERENCE_SHARD_MODE": "rendezvous",
        "INFERENCE_SHARD_BAR_INTERVAL_S": "0.1",
        "BUS_SECRET_FILE": str(tmp_path / "bus.key"),
        "BUS_KEYS_DIR": str(tmp_path / "curve"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "inference"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert '"event":"config_error"' in text and "INFERENCE_SHARD_BAR_INTERVAL_S" in text
    assert "Traceback" not in text
