"""Checking a program's TLS settings (``tls_ca``, ``tls_cert``, ``tls_key``) when it starts,
so that a wrong file is a clear error naming the setting, not a handshake that fails later
with "Socket closed" on the other side.

The certificate must be readable, signed by the CA beside it, in its validity period, match
its key, and speak for the program that uses it: a coordinator's says role coordinator, an
agent's names the agent's own region (latitude.pki)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from latitude.errors import ConfigError
from latitude.pki import CertFiles, Identity, identity_of_pem

_PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_tls(
    tls: CertFiles,
    expected: Identity | None,
    *,
    now: datetime.datetime | None = None,
    setting: str = "tls",
):
    """ConfigError naming the setting unless ``tls`` is fit for a program that is ``expected``
    (None: a certificate that names no latitude identity, such as an etcd client's, whose CN
    is its etcd user). ``setting``: the settings' prefix (``tls``, or ``etcd`` for
    etcd_ca/etcd_cert/etcd_key)."""
    tls_cert, tls_key, tls_ca = (f"{setting}_{m}" for m in ("cert", "key", "ca"))
    cert_pem, key_pem, ca_pem = (
        _read(tls.cert, tls_cert),
        _read(tls.key, tls_key),
        _read(tls.ca, tls_ca),
    )
    cert = _certificate(cert_pem, tls_cert, tls.cert)
    ca = _certificate(ca_pem, tls_ca, tls.ca)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"{tls_key}: {tls.key} is not an unencrypted PEM private key ({err})"
        ) from err
    if key.public_key().public_bytes(*_PUBLIC) != cert.public_key().public_bytes(*_PUBLIC):
        raise ConfigError(f"{tls_key}: {tls.key} is not the key of {tls_cert} {tls.cert}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise ConfigError(
            f"{tls_cert}: {tls.cert} was not issued by the CA in {tls_ca} ({tls.ca})"
        ) from err
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        raise ConfigError(
            f"{tls_cert}: {tls.cert} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
            "(renew it: latitude certs)"
        )
    if cert.not_valid_before_utc > now:
        raise ConfigError(
            f"{tls_cert}: {tls.cert} is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
            " UTC (is this machine's clock right?)"
        )
    identity = identity_of_pem(cert_pem)
    if expected is not None and identity != expected:
        said = f"speaks for {identity} ({identity.uri})" if identity else "names no identity"
        raise ConfigError(
            f"{tls_cert}: {tls.cert} {said}, but this program is {expected}: its certificate "
            f"must carry the SAN URI {expected.uri}"
        )


def _read(path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{setting}: cannot read {path}: {err.strerror or err}") from err


def _certificate(pem: bytes, setting: str, path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise ConfigError(f"{setting}: {path} is not a PEM certificate") from err
