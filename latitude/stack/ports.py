"""Choosing the stack's ports and checking that they are free."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from latitude.errors import PortInUseError, StackError


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR matches what servers do, so a port in TIME_WAIT still counts as free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def allocate(host: str, names: Sequence[str], base: int = 0) -> dict[str, int]:
    """One port per name on ``host``: consecutive from ``base``, or free ephemeral ports if 0.

    All sockets are held until every port is chosen, so the ports are distinct.
    """
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        for offset, name in enumerate(names):
            wanted = base + offset if base else 0
            try:
                sock = _bind(host, wanted)
            except OSError as err:
                raise _bind_error(host, wanted, name, err) from err
            held.append(sock)
            ports[name] = sock.getsockname()[1]
    finally:
        for sock in held:
            sock.close()
    return ports


def check_free(host: str, ports: dict[str, int]) -> None:
    """Raise PortInUseError naming the first of ``ports`` that another process holds."""
    for name, port in ports.items():
        try:
            _bind(host, port).close()
        except OSError as err:
            raise _bind_error(host, port, name, err) from err


def check_udp_free(host: str, ports: dict[str, int]) -> None:
    """As check_free, for UDP: a DNS responder listens on its port for both."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for name, port in ports.items():
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as err:
                raise _bind_error(host, port, name, err) from err


def _bind_error(host: str, port: int, name: str, err: OSError) -> StackError:
    if err.errno == errno.EADDRINUSE:
        return PortInUseError(
            f"port {port} on {host} (for {name}) is in use by another process; "
            "stop that process or choose other ports (--port-base, or 0 for free ports)"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return StackError(f"address {host} is not an address of this machine (for {name})")
    return StackError(f"cannot bind {host}:{port} for {name}: {err.strerror}")
