"""A DNS responder's port must be free for UDP as well as TCP."""

from __future__ import annotations

import socket

import pytest

from latitude.errors import PortInUseError
from latitude.stack import ports


def test_a_port_held_for_udp_is_named():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(
            PortInUseError, match=f"port {port} on 127.0.0.1 .for coordinator-1.dns"
        ):
            ports.check_udp_free("127.0.0.1", {"coordinator-1.dns": port})
    ports.check_udp_free("127.0.0.1", {"coordinator-1.dns": port})
