"""Calls refused by role (latitude.authz), recorded as events with the caller's identity.

Events are the leader's to write: a follower's refusals are only logged (by latitude.authz).
The rate is bounded so that a flood of refused calls cannot flood etcd or push the real
history out of its bounded length: at most ``burst`` events a minute, each saying how many
refusals went unrecorded before it."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from latitude.authz import Throttle
from latitude.pki import Identity
from latitude.v1 import admin_pb2


class RefusalEvents:
    """The ``on_refused`` callback of the coordinator's Authorizer."""

    def __init__(self, node, *, burst: int = 10, clock: Callable[[], float] = time.monotonic):
        self._node = node
        self._throttle = Throttle(burst, 60.0, clock=clock)

    def __call__(
        self,
        identity: Identity | None,
        method: str,
        code: grpc.StatusCode,
        *,
        detail: str = "",
        region: str | None = None,
    ) -> None:
        """Record one refusal; ``detail`` says why beyond the role (the AgentService's own
        checks of a Hello), ``region`` the region it concerns (default: the identity's)."""
        node = self._node
        if not node.is_leader:
            return
        held = self._throttle.allow()
        if held is None:
            return
        who = f"{identity} ({identity.uri})" if identity else "a caller without identity"
        message = f"refused {method} to {who}: {code.name}"
        if detail:
            message += f": {detail}"
        if held:
            message += f" ({held} more refusals not recorded)"
        if region is None:
            region = identity.region if identity else ""
        if region not in node.config.regions:
            region = ""
        node.events.record(
            admin_pb2.EVENT_KIND_ACCESS_REFUSED,
            admin_pb2.SEVERITY_WARNING,
            region=region,
            message=message,
            attributes={
                "method": method,
                "code": code.name,
                "identity": identity.uri if identity else "",
            },
        )
