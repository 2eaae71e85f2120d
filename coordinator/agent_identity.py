"""Who may speak for a region: the certificate decides, not the Hello.

With TLS every agent's certificate names its region (``latitude://region/<name>``, see
latitude.pki): a stream may carry that region's reports and nothing else, whatever its Hello
says. Without TLS (a laptop stack) there is no identity to check, and the Hello is believed as
before; the other checks (validation, region_hosts, the held-stream rule) still apply.
"""

from __future__ import annotations

from latitude.errors import LatitudeError
from latitude.pki import Identity
from latitude.v1 import agent_pb2

# A Hello's region is unchecked when this runs: shown no longer than a valid name can be.
_SHOWN = 128


class AccessRefused(LatitudeError):
    """The caller's certificate does not allow what it asks (PERMISSION_DENIED)."""


def check_agent_role(identity: Identity | None) -> None:
    """AccessRefused unless ``identity`` is an agent's; None (plaintext) passes."""
    if identity is not None and identity.role != "agent":
        raise AccessRefused(
            f"a certificate with the {identity.role} role cannot open an agent stream (only a "
            "region's agent certificate can)"
        )


def check_agent_identity(identity: Identity | None, hello: agent_pb2.Hello) -> None:
    """AccessRefused unless ``identity`` may send ``hello``; None (plaintext) may."""
    check_agent_role(identity)
    if identity is not None and identity.region != hello.region:
        raise AccessRefused(
            f"the certificate is for region {identity.region!r} but the hello says "
            f"{hello.region[:_SHOWN]!r}: an agent speaks only for the region its certificate "
            "names"
        )
