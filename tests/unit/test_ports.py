from __future__ import annotations

import socket

import pytest

from latitude.errors import PortInUseError, StackError
from latitude.stack import ports


def test_free_ports_are_distinct_and_bindable():
    chosen = ports.allocate("127.0.0.1", ["a", "b", "c", "d"])
    assert len(set(chosen.values())) == 4
    ports.check_free("127.0.0.1", chosen)


def test_a_taken_port_is_named_with_its_owner():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 \\(for etcd-1.peer\\)"):
            ports.check_free("127.0.0.1", {"etcd-1.peer": port})
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 \\(for x\\)"):
            ports.allocate("127.0.0.1", ["x", "y"], base=port)


def test_an_address_not_on_this_machine_is_named():
    # TEST-NET-1 (RFC 5737) is never assigned to a local interface; nothing is sent to it.
    with pytest.raises(StackError, match=r"192\.0\.2\.1 is not an address of this machine"):
        ports.allocate("192.0.2.1", ["x"])
