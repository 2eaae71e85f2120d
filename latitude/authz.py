"""Who may call what: the role table for every RPC, and the interceptor that enforces it.

The caller's role comes from its certificate (latitude.identity), never from a message. The
table names, for each method, the roles allowed to call it; a method it does not name is
refused to everyone (deny by default: a new RPC is closed until someone decides who may call
it, and tests/unit/test_authz.py fails until they do).

- AdminService GetStatus, ListEvents, GetHistory, ListIncidents: reader, operator, coordinator.
  The cluster's state and its past: reading changes nothing.
- AdminService SetStrategy, Switchover, Failover, SetMaintenance: operator. They change the
  cluster. A follower sends the caller to the leader rather than call it itself, so no
  coordinator needs them.
- AdminService CheckConsistency: operator, coordinator. A fresh check commands every agent
  (REPORT_NOW), which is work, not a read; a follower forwards the check to the leader.
- AdminService Verify: operator. Checksums over every region's database are real load on the
  primary; any replica runs it itself, nothing forwards it.
- RoutingService Resolve, Watch: reader, operator, coordinator. Routing decisions, which every
  application client needs (with a reader's certificate).
- RoutingService ReportLatency: reader, operator, coordinator, agent. Measurements only from
  authenticated callers; a follower forwards them to the leader.
- AgentService Connect: agent. Which region an agent may speak for is the AgentService's
  check, from the same certificate (latitude.identity.peer_identity).
- FailsafeService Confirm: agent, coordinator. A primary's agent asks the standbys' agents
  whether they still follow it; an agent may ask only about its own region, which
  agent.failsafe checks against the request.
- VerifyService Tables, Checksum, Bounds, Rows: coordinator. The replica that runs Verify asks
  each region's agent; nobody else queries databases through agents.
- grpc.health.v1 and server reflection: anyone who completes the handshake. They reveal
  nothing a port scan does not.

Refusals: a caller without a latitude identity gets UNAUTHENTICATED, one whose role is not in
the method's entry PERMISSION_DENIED naming its identity, the method and the roles allowed.
Each refusal is counted (``latitude_rpc_refused_total{method,code}``, labels bounded by this
table and the two codes), logged at a bounded rate, and passed to ``on_refused`` (the
coordinator records it as an event).

The interceptor runs only when the server has TLS: in plaintext mode there is no identity and
nothing is checked, as on a laptop stack. A TLS server requires a client certificate during
the handshake (grpc's Python API cannot ask for one without requiring it), so a caller
without any certificate is refused before it reaches this module; the UNAUTHENTICATED here is
for a certificate of this CA that names no latitude identity.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping

import grpc
from prometheus_client import Counter

from latitude.identity import peer_identity
from latitude.pki import Identity

log = logging.getLogger(__name__)

READERS = frozenset({"reader", "operator", "coordinator"})
OPERATORS = frozenset({"operator"})

_ADMIN = "/latitude.v1.AdminService/"
_ROUTING = "/latitude.v1.RoutingService/"
_AGENT = "/latitude.v1.AgentService/"
_FAILSAFE = "/latitude.v1.FailsafeService/"
_VERIFY = "/latitude.v1.VerifyService/"

ROLES: Mapping[str, frozenset[str]] = {
    _ADMIN + "GetStatus": READERS,
    _ADMIN + "ListEvents": READERS,
    _ADMIN + "GetHistory": READERS,
    _ADMIN + "ListIncidents": READERS,
    _ADMIN + "SetStrategy": OPERATORS,
    _ADMIN + "Switchover": OPERATORS,
    _ADMIN + "Failover": OPERATORS,
    _ADMIN + "SetMaintenance": OPERATORS,
    _ADMIN + "CheckConsistency": frozenset({"operator", "coordinator"}),
    _ADMIN + "Verify": OPERATORS,
    _ROUTING + "Resolve": READERS,
    _ROUTING + "Watch": READERS,
    _ROUTING + "ReportLatency": READERS | {"agent"},
    _AGENT + "Connect": frozenset({"agent"}),
    _FAILSAFE + "Confirm": frozenset({"agent", "coordinator"}),
    _VERIFY + "Tables": frozenset({"coordinator"}),
    _VERIFY + "Checksum": frozenset({"coordinator"}),
    _VERIFY + "Bounds": frozenset({"coordinator"}),
    _VERIFY + "Rows": frozenset({"coordinator"}),
}

# Services anyone who completes the handshake may call.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

NO_CERTIFICATE = (
    "a client certificate issued by this cluster's CA is required, naming a latitude "
    "identity (latitude://role/<role> or latitude://region/<region>)"
)
CODES = {
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.PERMISSION_DENIED: "permission_denied",
}
OTHER_METHOD = "other"  # the label of a method the table does not name

REFUSED = Counter(
    "latitude_rpc_refused",
    "Calls refused by role (method: from the role table, or 'other'; code: "
    "unauthenticated or permission_denied)",
    ["method", "code"],
)

OnRefused = Callable[[Identity | None, str, grpc.StatusCode], None]


def is_open(method: str) -> bool:
    return method.startswith(OPEN_SERVICES)


def refusal(
    identity: Identity | None, method: str, table: Mapping[str, frozenset[str]] = ROLES
) -> tuple[grpc.StatusCode, str] | None:
    """Why ``identity`` may not call ``method`` (the status code and its message); None when
    it may."""
    if is_open(method):
        return None
    if identity is None:
        return grpc.StatusCode.UNAUTHENTICATED, NO_CERTIFICATE
    allowed = table.get(method)
    if not allowed:
        return grpc.StatusCode.PERMISSION_DENIED, f"{method} is open to no caller"
    if identity.role in allowed:
        return None
    return grpc.StatusCode.PERMISSION_DENIED, (
        f"{identity} ({identity.uri}) may not call {method}: only {', '.join(sorted(allowed))} may"
    )


class Throttle:
    """At most ``burst`` passes in any ``per`` seconds (a token bucket); counts the rest."""

    def __init__(
        self, burst: int = 5, per: float = 10.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if burst < 1 or not per > 0:
            raise ValueError("a throttle needs burst >= 1 and a positive period")
        self._burst = burst
        self._rate = burst / per
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self.held = 0  # held back since the last pass

    def allow(self) -> int | None:
        """None: held back. Otherwise how many were held back since the last pass."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            self.held += 1
            return None
        self._tokens -= 1
        held, self.held = self.held, 0
        return held


class Authorizer(grpc.aio.ServerInterceptor):
    """Enforces ``table`` on every call of a TLS server (latitude.serving.Server)."""

    def __init__(
        self,
        *,
        on_refused: OnRefused | None = None,
        table: Mapping[str, frozenset[str]] = ROLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_refused = on_refused
        self._table = table
        self._logged = Throttle(5, 10.0, clock=clock)
        # method -> (the handler gRPC gave, its guarded version): one wrapper per method,
        # not one per call. Only methods of the table are kept, so it stays bounded.
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open(method):
            return handler
        kept = self._guarded.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        guarded = self._guard(handler, method)
        if method in self._table:
            self._guarded[method] = (handler, guarded)
        return guarded

    async def check(self, context: grpc.aio.ServicerContext, method: str) -> None:
        """Abort the call unless its caller may call ``method``."""
        identity = peer_identity(context)
        refused = refusal(identity, method, self._table)
        if refused is None:
            return
        code, message = refused
        self._refused(identity, method, code, message)
        await context.abort(code, message)

    def _refused(
        self, identity: Identity | None, method: str, code: grpc.StatusCode, message: str
    ) -> None:
        label = method if method in self._table else OTHER_METHOD
        REFUSED.labels(label, CODES[code]).inc()
        held = self._logged.allow()
        if held is not None:
            more = f" ({held} more refusals not logged)" if held else ""
            log.warning("refused %s from %s: %s%s", method[:200], identity or "a caller "
                        "without identity", message, more)  # fmt: skip
        if self._on_refused is not None:
            try:
                self._on_refused(identity, method[:200], code)
            except Exception:
                log.exception("on_refused failed")

    def _guard(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        check = self.check
        if handler.unary_unary is not None:
            inner, make = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        elif handler.unary_stream is not None:
            inner, make = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        elif handler.stream_unary is not None:
            inner, make = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        else:
            inner, make = handler.stream_stream, grpc.stream_stream_rpc_method_handler

        if inspect.isasyncgenfunction(inner):

            async def guarded(request, context):
                await check(context, method)
                async for response in inner(request, context):
                    yield response

        else:

            async def guarded(request, context):
                await check(context, method)
                result = inner(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result

        return make(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
