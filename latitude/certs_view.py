"""``latitude certs``: the local stack's certificates at a glance, and the TLS line of
``latitude status``."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from latitude.pki import CertInfo
from latitude.stack import tls
from latitude.table import render

PLAINTEXT_WARNING = "plaintext: anyone who reaches a port can change the cluster"


def cert_rows(
    specs: Sequence[tls.CertSpec], infos: Sequence[CertInfo | None], now: datetime.datetime
) -> list[list[str]]:
    rows = []
    for spec, info in zip(specs, infos, strict=True):
        if info is None:
            rows.append([spec.name, _identity(spec), "-", "-", "MISSING (latitude up issues it)"])
            continue
        who = str(info.identity) if info.identity else info.subject
        rows.append(
            [
                spec.name,
                who,
                " ".join(info.hosts) or "-",
                tls.human_expiry(info, now),
                _flag(tls.expiry_note(info, now)),
            ]
        )
    return rows


def format_certs(
    ca: CertInfo,
    specs: Sequence[tls.CertSpec],
    infos: Sequence[CertInfo | None],
    now: datetime.datetime,
) -> str:
    head = (
        f"CA {ca.path} ({ca.subject}), fingerprint SHA-256 {tls.fingerprint(ca.path)}, "
        f"expires in {tls.human_expiry(ca, now)}"
    )
    note = tls.expiry_note(ca, now)
    if note:
        head += f" — {note}: make a new stack to replace it"
    table = render(
        ["COMPONENT", "IDENTITY", "HOSTS", "EXPIRES IN", "NOTE"],
        cert_rows(specs, infos, now),
    )
    return f"{head}\n\n{table}"


def certs_json(
    ca: CertInfo,
    specs: Sequence[tls.CertSpec],
    infos: Sequence[CertInfo | None],
    now: datetime.datetime,
) -> dict:
    certs = []
    for spec, info in zip(specs, infos, strict=True):
        entry: dict = {"component": spec.name, "note": tls.expiry_note(info, now)}
        if info is not None:
            entry |= {
                "path": str(info.path),
                "subject": info.subject,
                "identity": info.identity.uri if info.identity else None,
                "hosts": info.hosts,
                "not_after": info.not_after.isoformat(),
                "expires_in_seconds": int((info.not_after - now).total_seconds()),
            }
        certs.append(entry)
    return {
        "ca": {
            "path": str(ca.path),
            "fingerprint": tls.fingerprint(ca.path),
            "not_after": ca.not_after.isoformat(),
            "note": tls.expiry_note(ca, now),
        },
        "certificates": certs,
    }


def format_mode(summary: tls.Summary | None, now: datetime.datetime) -> str:
    """One line for ``latitude status``: which mode runs, and certificates to renew."""
    if summary is None:
        return f"security: {PLAINTEXT_WARNING} (`latitude down`, then `latitude up --tls`)"
    left = summary.ca_expires - now
    line = (
        f"security: mutual TLS, CA fingerprint SHA-256 {summary.ca_fingerprint[:23]}…, "
        f"CA expires in {left.days} d"
    )
    if summary.flagged:
        flagged = ", ".join(f"{name} {note}" for name, note in sorted(summary.flagged.items()))
        line += f"\nWARNING: certificates to renew (latitude certs renew): {flagged}"
    return line


def mode_json(summary: tls.Summary | None) -> dict:
    if summary is None:
        return {"mode": "plaintext", "warning": PLAINTEXT_WARNING}
    return summary.to_json()


def _identity(spec: tls.CertSpec) -> str:
    if spec.identity is not None:
        return str(spec.identity)
    return f"CN={spec.common_name or spec.name}"


def _flag(note: str) -> str:
    return note.upper() if note else ""
