"""Who is calling: the identity in the TLS peer's certificate (see latitude.pki).

In plaintext mode there is no certificate and no identity: ``peer_identity`` answers None and
the caller decides what an anonymous peer may do (everything, on a laptop stack; nothing that
needs a role, once TLS is on)."""

from __future__ import annotations

import grpc

from latitude.pki import Identity


def peer_identity(context: grpc.aio.ServicerContext) -> Identity | None:
    """The identity the peer's verified certificate names; None without TLS or without a
    latitude URI. gRPC verified the chain against our CA before the call reached us."""
    auth = context.auth_context() or {}
    uris = [value.decode("utf-8", "replace") for value in auth.get("peer_uri", ())]
    if not uris:
        uris = [
            value.decode("utf-8", "replace")
            for value in auth.get("x509_subject_alternative_name", ())
        ]
    return Identity.from_uris(uris)


def peer_is_tls(context: grpc.aio.ServicerContext) -> bool:
    auth = context.auth_context() or {}
    return auth.get("transport_security_type", [b""])[0] == b"ssl"
