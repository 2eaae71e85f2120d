"""Checking a program's TLS settings (``tls_ca``, ``tls_cert``, ``tls_key``) when it starts,
so that a wrong file is a clear error naming the setting, not a handshake that fails later
with "Socket closed" on the other side.

The certificate must be readable, signed by the CA beside it, in its validity period, match
its key, speak for the program that uses it (a coordinator's says role coordinator, an agent's
names the agent's own region, see latitude.pki), and, since the program serves with it too,
name the host others dial to reach it: clients check that name in the handshake."""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from latitude.errors import ConfigError
from latitude.pki import CertFiles, Identity, identity_of_pem

_PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def check_tls(
    tls: CertFiles,
    expected: Identity | None,
    *,
    serves: tuple[str, str] | None = None,
    now: datetime.datetime | None = None,
    setting: str = "tls",
):
    """ConfigError naming the setting unless ``tls`` is fit for a program that is ``expected``
    (None: a certificate that names no latitude identity, such as an etcd client's, whose CN
    is its etcd user) and that others reach at ``serves`` (the host, and the setting it comes
    from). ``setting``: the settings' prefix (``tls``, or ``etcd`` for etcd_ca/etcd_cert/
    etcd_key)."""
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
            f"{tls_cert}: {tls.cert} {said}, but this program runs as {expected}: its "
            "certificate "
            f"must carry the SAN URI {expected.uri}"
        )
    if serves is not None and serves[0] not in WILDCARD_HOSTS:
        _check_serves(cert, tls, *serves)


def _check_serves(cert: x509.Certificate, tls: CertFiles, host: str, setting: str) -> None:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        serves = ExtendedKeyUsageOID.SERVER_AUTH in usages
    except x509.ExtensionNotFound:
        serves = True  # no restriction on its use
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        addresses = san.get_values_for_type(x509.IPAddress)
    except x509.ExtensionNotFound:
        names, addresses = [], []
    if not serves:
        raise ConfigError(
            f"tls_cert: {tls.cert} may only be a client's (no serverAuth usage), but this "
            f"program serves gRPC with it at {host} ({setting}): issue it with that host"
        )
    if not _names_host(host, names, addresses):
        named = ", ".join([*names, *(str(a) for a in addresses)]) or "no host"
        raise ConfigError(
            f"tls_cert: {tls.cert} is not valid for {host}, where others reach this program "
            f"({setting}); it names {named}"
        )


def _names_host(host: str, names: list[str], addresses: list) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        host = host.lower().rstrip(".")
        for name in (n.lower().rstrip(".") for n in names):
            if name == host:
                return True
            # A wildcard stands for exactly one leftmost label.
            if name.startswith("*.") and host.partition(".")[2] == name[2:] and "." in host:
                return True
        return False
    return address in addresses


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
