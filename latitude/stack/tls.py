"""The local stack's certificates: one CA in ``<stack>/tls`` and a certificate per component.

- each coordinator serves on its address as ``coordinator``; each agent serves on its address
  as the agent of its region (the only region it may speak for);
- ``operator`` and ``reader`` are client certificates for the ``latitude`` command and tests;
- etcd: a server certificate per member (its address), and two client certificates named by
  their CN, which etcd takes as the user: ``latitude`` for the coordinators, ``root`` for
  setting etcd's users and roles up.

A certificate already there is kept when it still says what the plan says (a restart keeps
identities); ``renew`` issues every one again from the same CA, all before any is replaced.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from latitude import pki
from latitude.errors import ConfigError, StackError
from latitude.pki import CertFiles, CertInfo, Identity
from latitude.stack.topology import Topology

TLS_DIR = "tls"
# Flagged in ``latitude certs`` and ``latitude status`` from this close to expiry.
RENEW_BEFORE = datetime.timedelta(days=30)
# The CNs etcd takes as user names (--client-cert-auth).
ETCD_CLIENT_USER = "latitude"
ETCD_ROOT_USER = "root"
# A name every member's certificate carries beside its address: the coordinators verify
# members on several hosts (network namespaces) against it (--etcd-server-name).
ETCD_SERVER_NAME = "etcd.latitude"
ETCD_CLIENT = "etcd-client"
ETCD_ROOT = "etcd-root"
CLIENT_ROLES = ("operator", "reader")


@dataclass(frozen=True)
class CertSpec:
    """One certificate the stack needs: its file stem (the component), who it speaks for,
    where it serves, and the CN etcd reads."""

    name: str
    identity: Identity | None = None
    hosts: tuple[str, ...] = ()
    common_name: str | None = None

    def satisfied_by(self, info: CertInfo, now: datetime.datetime) -> bool:
        return (
            info.identity == self.identity
            and set(self.hosts) <= set(info.hosts)
            and info.subject == f"CN={self.common_name or self.name}"
            and info.not_after > now
        )


@dataclass(frozen=True)
class EtcdCerts:
    """What etcd needs in TLS mode: a server certificate per member, and the client
    certificates of the coordinators (CN latitude) and of setup (CN root)."""

    members: dict[str, CertFiles]
    client: CertFiles
    root: CertFiles


def plan(topology: Topology, address_of: Callable[[str], str]) -> list[CertSpec]:
    """Every certificate of a stack with ``topology``; ``address_of(component)`` is where that
    process listens."""
    specs = [CertSpec(c, Identity("coordinator"), (address_of(c),)) for c in topology.coordinators]
    for region in topology.regions:
        name = f"agent-{region.name}"
        specs.append(CertSpec(name, Identity("agent", region.name), (address_of(name),)))
    specs += [CertSpec(role, Identity(role)) for role in CLIENT_ROLES]
    specs += [CertSpec(m, None, (address_of(m), ETCD_SERVER_NAME)) for m in topology.etcd_members]
    specs.append(CertSpec(ETCD_CLIENT, None, (), ETCD_CLIENT_USER))
    specs.append(CertSpec(ETCD_ROOT, None, (), ETCD_ROOT_USER))
    return specs


def files(directory: Path, name: str) -> CertFiles:
    return CertFiles(directory / f"{name}.crt", directory / f"{name}.key", directory / "ca.crt")


def state_record(directory: Path, specs: Iterable[CertSpec]) -> dict:
    """What state.json keeps of the mode: where the CA and each certificate are."""
    return {
        "dir": str(directory),
        "ca": str(directory / "ca.crt"),
        "certs": {
            s.name: {
                "cert": str(files(directory, s.name).cert),
                "key": str(files(directory, s.name).key),
            }
            for s in specs
        },
    }


def etcd_certs(directory: Path, topology: Topology) -> EtcdCerts:
    return EtcdCerts(
        members={m: files(directory, m) for m in topology.etcd_members},
        client=files(directory, ETCD_CLIENT),
        root=files(directory, ETCD_ROOT),
    )


def ensure(directory: Path, specs: Iterable[CertSpec], days: int = 365) -> list[str]:
    """Make the CA if there is none and every certificate that is missing, expired or no longer
    says what its spec says; the names issued (none when everything was there)."""
    _check_days(days)
    if not (directory / "ca.crt").exists():
        if (directory / "ca.key").exists():
            raise StackError(f"{directory} holds ca.key but no ca.crt: remove the directory")
        pki.create_ca(directory)
    now = datetime.datetime.now(datetime.UTC)
    issued = []
    for spec in specs:
        paths = files(directory, spec.name)
        if paths.cert.exists() and paths.key.exists():
            try:
                if spec.satisfied_by(pki.describe(paths.cert), now):
                    continue
            except ValueError:
                pass  # not a certificate any more: issue it again
        _issue(directory, spec, days, directory)
        issued.append(spec.name)
    return issued


def renew(directory: Path, specs: Iterable[CertSpec], days: int = 365) -> list[str]:
    """Issue every certificate again from the same CA: all are made in a staging directory
    first, so a failure part-way replaces none; then each key and certificate is renamed into
    place. The names renewed."""
    _check_days(days)
    if not (directory / "ca.key").exists():
        raise StackError(f"no CA in {directory} (ca.key is missing): `latitude up --tls` makes it")
    staging = directory / f".renew-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        specs = list(specs)
        for spec in specs:
            _issue(directory, spec, days, staging)
        for spec in specs:
            # The key first: a process starting between the two renames fails its handshake
            # (a mismatched pair) rather than serving an old key under a new certificate.
            for suffix in (".key", ".crt"):
                os.replace(staging / f"{spec.name}{suffix}", directory / f"{spec.name}{suffix}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [s.name for s in specs]


def inventory(directory: Path, specs: Iterable[CertSpec]) -> list[CertInfo | None]:
    """What each spec's certificate file says now (None where it is missing or unreadable)."""
    out: list[CertInfo | None] = []
    for spec in specs:
        try:
            out.append(pki.describe(files(directory, spec.name).cert))
        except (OSError, ValueError):
            out.append(None)
    return out


def expiry_note(info: CertInfo | None, now: datetime.datetime) -> str:
    """Empty for a certificate far from expiry, else what is wrong with it."""
    if info is None:
        return "MISSING"
    left = info.not_after - now
    if left <= datetime.timedelta(0):
        return "EXPIRED"
    if left < RENEW_BEFORE:
        return f"expires in under {RENEW_BEFORE.days} days"
    return ""


def human_expiry(info: CertInfo, now: datetime.datetime) -> str:
    left = info.not_after - now
    if left <= datetime.timedelta(0):
        return f"expired {_days(-left)} ago"
    return _days(left)


def _days(delta: datetime.timedelta) -> str:
    if delta >= datetime.timedelta(days=2):
        return f"{delta.days} d"
    return f"{delta.total_seconds() / 3600:.0f} h"


def fingerprint(ca_cert: Path) -> str:
    """SHA-256 of the certificate's DER, as openssl x509 -fingerprint -sha256 prints it."""
    cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class Summary:
    """The stack's TLS mode at a glance, for ``latitude status``."""

    ca: Path
    ca_fingerprint: str
    ca_expires: datetime.datetime
    # Certificates expired or close to it: name -> note.
    flagged: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "mode": "tls",
            "ca": str(self.ca),
            "ca_fingerprint": self.ca_fingerprint,
            "ca_expires": self.ca_expires.isoformat(),
            "flagged": self.flagged,
        }


def summary(directory: Path, specs: list[CertSpec], now: datetime.datetime) -> Summary:
    ca = directory / "ca.crt"
    try:
        ca_info = pki.describe(ca)
    except (OSError, ValueError) as err:
        raise StackError(f"the stack's CA {ca} is unreadable ({err})") from err
    flagged = {}
    for spec, info in zip(specs, inventory(directory, specs), strict=True):
        note = expiry_note(info, now)
        if note:
            flagged[spec.name] = note
    note = expiry_note(ca_info, now)
    if note:
        flagged["ca"] = note
    return Summary(ca, fingerprint(ca), ca_info.not_after, flagged)


def _issue(ca_dir: Path, spec: CertSpec, days: int, directory: Path) -> CertFiles:
    return pki.issue(
        ca_dir,
        spec.name,
        identity=spec.identity,
        hosts=list(spec.hosts),
        common_name=spec.common_name,
        days=days,
        directory=directory,
    )


def _check_days(days: int) -> None:
    if not 1 <= days <= 3650:
        raise ConfigError(f"days: a certificate lives 1 to 3650 days, got {days}")
