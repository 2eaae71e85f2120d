"""Every gRPC channel latitude opens: to a coordinator, to the leader, to an agent.

One place decides how a channel is secured and how large a message may be. With ``tls``
(a certificate, its key and the CA, see latitude.pki) the channel is mutual TLS: it proves
our identity with the certificate and trusts only servers whose certificate the CA signed
for the address dialled. Without it the channel is plaintext, as on a laptop stack.

Certificates are read once per file version: a renewed certificate (``latitude certs``,
which rewrites the files) is used by the next channel opened, never half-read by one.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import grpc

from latitude.errors import ConfigError
from latitude.pki import CertFiles

# The largest message any latitude program sends or accepts, unless the caller says otherwise
# (the coordinator accepts far less from agents). gRPC's own default only bounds receiving.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MESSAGE_LIMITS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)

_CACHED = 16  # certificate sets kept: a program uses one or two
_credentials: OrderedDict[CertFiles, tuple[tuple, grpc.ChannelCredentials]] = OrderedDict()


def open_channel(
    address: str, tls: CertFiles | None = None, *, options: Sequence[tuple[str, object]] = ()
) -> grpc.aio.Channel:
    """A channel to ``address`` (host:port): mutual TLS with ``tls``, else plaintext. The
    message size limits are always set; ``options`` add to them and win on the same key."""
    merged = with_limits(options)
    if tls is None:
        return grpc.aio.insecure_channel(address, options=merged)
    return grpc.aio.secure_channel(address, channel_credentials(tls), options=merged)


def with_limits(options: Sequence[tuple[str, object]] = ()) -> list[tuple[str, object]]:
    """``options`` with the message size limits, the caller's value kept where both set one."""
    given = {key for key, _ in options}
    return [*(o for o in MESSAGE_LIMITS if o[0] not in given), *options]


def channel_credentials(tls: CertFiles) -> grpc.ChannelCredentials:
    """The credentials for ``tls``, read again only when one of its files changed."""
    version = _version(tls)
    cached = _credentials.get(tls)
    if cached is not None and cached[0] == version:
        _credentials.move_to_end(tls)
        return cached[1]
    cert, key, ca = tls.read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    _credentials[tls] = (version, credentials)
    _credentials.move_to_end(tls)
    while len(_credentials) > _CACHED:
        _credentials.popitem(last=False)
    return credentials


def _version(tls: CertFiles) -> tuple:
    try:
        return tuple(
            (s.st_ino, s.st_mtime_ns, s.st_size)
            for s in (os.stat(p) for p in (tls.cert, tls.key, tls.ca))
        )
    except OSError as err:
        raise ConfigError(f"cannot read {err.filename}: {err.strerror or err}") from err
