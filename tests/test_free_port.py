"""tests/util/processes.free_port: ports no outgoing connection can take before a server
binds them."""

from __future__ import annotations

import socket

import pytest

from tests.util import processes
from tests.util.processes import ephemeral_floor, free_port


def test_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    low = ephemeral_floor()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(max(1024, low - processes._PORT_SPAN) <= port < low for port in ports)
    with socket.socket() as s:
        s.bind(("0.0.0.0", ports[0]))  # free on every address, as servers here bind


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            other = s.getsockname()[1]  # free once this closes
        draws = iter([busy, other])
        monkeypatch.setattr(processes.random, "randrange", lambda a, b: next(draws))
        monkeypatch.setattr(processes, "_HANDED_OUT", set())
        assert free_port() == other
