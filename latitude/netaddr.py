"""host:port strings, as every latitude address is written."""

from __future__ import annotations

import ipaddress

from latitude.errors import ConfigError


def parse_host_port(text: str, field: str, *, any_port: bool = False) -> tuple[str, int]:
    """'10.0.0.1:5432', 'db.example:5432' or '[::1]:5432' -> (host, port); ConfigError naming
    ``field`` otherwise. ``any_port`` also accepts port 0 (listen on a free port)."""
    if "/" in text or "@" in text or any(c.isspace() for c in text):
        raise ConfigError(f"{field}: expected host:port, got {text!r}")
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as err:
            raise ConfigError(f"{field}: {text!r} has a malformed IPv6 address") from err
    lowest = 0 if any_port else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ConfigError(f"{field}: expected host:port, got {text!r}")
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
