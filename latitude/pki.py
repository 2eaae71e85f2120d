"""latitude's certificates: a local certificate authority and one certificate per component.

The certificate is the identity. Who a caller is comes from a SAN URI in its certificate, never
from what its messages say:

- ``latitude://region/<name>``: the agent of region ``<name>``, and nothing else;
- ``latitude://role/<role>``: a coordinator, an operator (may change the cluster) or a reader
  (status, events, routing).

etcd authenticates a client certificate by its common name (``--client-cert-auth``), so a
certificate meant for etcd carries the etcd user's name as its CN.

Files are PEM; keys are written 0600 without following a link, certificates 0644. ``latitude
up --tls`` makes the CA and every certificate in ``<stack>/tls``; ``latitude certs`` shows and
renews them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from latitude.errors import ConfigError

SCHEME = "latitude://"
ROLES = ("coordinator", "operator", "reader", "agent")


@dataclass(frozen=True)
class Identity:
    """Who a certificate speaks for: a role, and for an agent its region."""

    role: str
    region: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r} (one of {', '.join(ROLES)})")
        if (self.role == "agent") != bool(self.region):
            raise ValueError("an agent's identity names its region, and only an agent's does")

    @property
    def uri(self) -> str:
        if self.role == "agent":
            return f"{SCHEME}region/{self.region}"
        return f"{SCHEME}role/{self.role}"

    def __str__(self) -> str:
        return f"agent of {self.region}" if self.role == "agent" else self.role

    @classmethod
    def from_uris(cls, uris: list[str]) -> Identity | None:
        """The identity the first latitude URI names; None when there is none."""
        for uri in uris:
            if not uri.startswith(SCHEME):
                continue
            kind, _, value = uri[len(SCHEME) :].partition("/")
            if kind == "region" and value:
                return cls("agent", value)
            if kind == "role" and value in ROLES and value != "agent":
                return cls(value)
        return None


@dataclass(frozen=True)
class CertFiles:
    """A certificate, its key, and the CA that both ends trust."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate, key, CA) as PEM bytes; a missing file is a ConfigError naming it."""
        out = []
        for path in (self.cert, self.key, self.ca):
            try:
                out.append(path.read_bytes())
            except OSError as err:
                raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
        return out[0], out[1], out[2]


@dataclass(frozen=True)
class CertInfo:
    path: Path
    subject: str
    identity: Identity | None
    hosts: list[str]
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial: int
    is_ca: bool

    def expires_in(self, now: datetime.datetime | None = None) -> datetime.timedelta:
        now = now or datetime.datetime.now(datetime.UTC)
        return self.not_after - now


def create_ca(directory: Path, name: str = "latitude local CA", days: int = 3650) -> Path:
    """A new CA in ``directory`` (ca.crt, ca.key); returns the certificate's path."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(directory / "ca.key", _key_pem(key), 0o600)
    _write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return directory / "ca.crt"


def issue(
    ca_dir: Path,
    name: str,
    *,
    identity: Identity | None = None,
    hosts: list[str] = (),
    common_name: str | None = None,
    days: int = 365,
    directory: Path | None = None,
) -> CertFiles:
    """A certificate signed by the CA in ``ca_dir``, written as ``<name>.crt`` and
    ``<name>.key`` in ``directory`` (``ca_dir`` by default). ``hosts`` (names and addresses)
    let it serve; it can always be a client too."""
    directory = directory or ca_dir
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    if identity is not None:
        sans.append(x509.UniformResourceIdentifier(identity.uri))
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if hosts:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(directory / f"{name}.key", _key_pem(key), 0o600)
    _write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CertFiles(directory / f"{name}.crt", directory / f"{name}.key", ca_dir / "ca.crt")


def describe(path: Path) -> CertInfo:
    """What a certificate file says: subject, identity, hosts, validity."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return _info(cert, path)


def identity_of_pem(pem: bytes) -> Identity | None:
    """The identity a PEM certificate (as a TLS peer presented it) speaks for."""
    return _info(x509.load_pem_x509_certificate(pem), Path("-")).identity


def _info(cert: x509.Certificate, path: Path) -> CertInfo:
    uris: list[str] = []
    hosts: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        hosts = san.get_values_for_type(x509.DNSName) + [
            str(ip) for ip in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        pass
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        identity=Identity.from_uris(uris),
        hosts=hosts,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
        is_ca=is_ca,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a new file renamed into place: never through a link an attacker planted,
    never a key readable for an instant by others."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
