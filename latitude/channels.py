"""Every gRPC client channel latitude opens: secure when given certificates, and with message
sizes always bounded (gRPC's default send limit is none at all).

Minimal version written for etcd's channels (issue 11, part etcdtls); the gRPC TLS part owns
this module and may replace it with the same signature.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from latitude.pki import CertFiles

# etcd answers ranges of up to its own request limit (1.5 MiB) plus framing; our services' own
# messages are far smaller.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def open_channel(
    address: str, tls: CertFiles | None = None, *, options: Sequence = ()
) -> grpc.aio.Channel:
    """A channel to ``address`` (any gRPC target), TLS with ``tls``'s client certificate when
    given. ``options`` win over the defaults set here."""
    merged = {
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    }
    merged.update(dict(options))
    if tls is None:
        return grpc.aio.insecure_channel(address, options=list(merged.items()))
    cert, key, ca = tls.read()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    return grpc.aio.secure_channel(address, credentials, options=list(merged.items()))
