"""The simulator process's default ports (``ibsim.process.free_ports``): distinct, free, and below
the kernel's ephemeral range, where an outbound connection cannot take them before the simulator
binds them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from ibsim.process import DEFAULT_PORT_STRETCH, ephemeral_port_low, free_ports

pytestmark = pytest.mark.unit


def test_ports_are_distinct_and_below_the_ephemeral_range() -> None:
    ports = free_ports(4)
    assert len(set(ports)) == 4
    low, high = DEFAULT_PORT_STRETCH
    assert all(low <= port < min(high, ephemeral_port_low()) for port in ports)


def test_a_port_something_holds_is_skipped() -> None:
    [port] = free_ports(1)
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        with pytest.raises(RuntimeError, match="fewer than 1 free ports"):
            free_ports(1, stretch=(port, port + 1))
    assert free_ports(1, stretch=(port, port + 1)) == [port]


def test_no_ports_asked_none_given() -> None:
    assert free_ports(0) == []


def test_the_ephemeral_range_is_read_from_the_kernel_file(tmp_path: Path) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("40000\t60999\n")
    assert ephemeral_port_low(range_file) == 40000
    assert ephemeral_port_low(tmp_path / "missing") == 32768  # Linux's default
