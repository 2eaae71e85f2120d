"""Who a call is from, as a key for per-caller limits (coordinator/limits.py).

With TLS the key is the certificate's identity (latitude.identity) and the peer's host: every
reader shares one identity (``latitude://role/reader``), so the host tells its clients apart,
while the identity keeps a host from passing as another role. In plaintext there is no
identity and the key is the host alone. The peer's port is never part of it: a new connection
must not make a new caller.

A coordinator forwarding a call to the leader names the caller it forwards for in the
``latitude-caller`` metadata. It is believed only from a peer whose certificate says
``coordinator``; in plaintext nobody can be told apart from a coordinator, so the forwarder
itself is the caller (its callers share its limits at the leader).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from latitude.identity import peer_identity
from latitude.pki import Identity

FORWARDED_FOR = "latitude-caller"
# A forwarded key longer than this is not believed (a key is an identity URI and a host).
MAX_KEY = 256


@dataclass(frozen=True, slots=True)
class Caller:
    key: str
    identity: Identity | None

    @property
    def forwarded_for(self) -> tuple[tuple[str, str], ...]:
        """Metadata for a call made on this caller's behalf."""
        return ((FORWARDED_FOR, self.key),)


def peer_host(peer: str) -> str:
    """The host in a gRPC peer string: ``ipv4:10.0.0.1:5000`` → ``10.0.0.1``,
    ``ipv6:[::1]:5000`` → ``::1``; anything else whole (``unix:/path``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return host.strip("[]") or rest
    return peer[:MAX_KEY]


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    """The caller of the call ``context`` belongs to, as a forwarding coordinator names it
    when it is one."""
    identity = peer_identity(context)
    host = peer_host(context.peer() or "")
    key = f"{identity.uri if identity is not None else 'anonymous'}@{host}"
    if identity is not None and identity.role == "coordinator":
        for name, value in context.invocation_metadata() or ():
            if name == FORWARDED_FOR and isinstance(value, str) and 0 < len(value) <= MAX_KEY:
                return Caller(value, identity)
    return Caller(key, identity)
