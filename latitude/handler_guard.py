"""What every latitude handler answers a stranger: requests that do not decode are refused
with INVALID_ARGUMENT, not UNKNOWN; and a status's details are bounded in size.

grpc runs a method's request deserializer before the handler; when protobuf refuses the bytes
(corrupt wire format, a string field holding invalid UTF-8, a truncated message), grpc ends
the call with UNKNOWN ("Unexpected DecodeError"), which tells a client nothing it can fix and
looks like a server bug. ``guarded(server)`` stands in for the server while services
register: every handler's deserializer then hands an undecodable request over as a
``Malformed`` value, and the handler's wrapper refuses it with INVALID_ARGUMENT naming the
message type. A stream that sends one bad message among good ones is ended the same way,
after the handler has cleaned up (it is cancelled, so its ``finally`` blocks run).

A refusal that quotes the request (``unknown region '...'``) would quote 70,000 characters of
a padded field: past the 8 KiB of metadata a gRPC client accepts, so the client sees
RESOURCE_EXHAUSTED ("received metadata size exceeds soft limit") instead of the refusal. The
context a guarded handler gets cuts its status details to ``MAX_DETAILS_BYTES`` (UTF-8,
before grpc percent-encodes them), saying how much was cut.

Handlers without a deserializer (methods that take the serialized request, like Resolve) are
left as they are: they parse the bytes themselves.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError


class Malformed:
    """A request that did not decode: what grpc passes on instead of raising."""

    __slots__ = ("error", "type_name")

    def __init__(self, type_name: str, error: Exception) -> None:
        self.type_name = type_name
        self.error = error

    @property
    def details(self) -> str:
        return f"request: not a valid {self.type_name} ({self.error})"


# Percent-encoded, non-ASCII bytes triple: at most about 3 KiB of the client's 8 KiB.
MAX_DETAILS_BYTES = 1024


def bounded(details: str) -> str:
    """``details`` cut to MAX_DETAILS_BYTES of UTF-8, saying so when cut."""
    if len(details) * 4 <= MAX_DETAILS_BYTES:
        return details
    encoded = details.encode("utf-8", "replace")
    if len(encoded) <= MAX_DETAILS_BYTES:
        return details
    kept = encoded[:MAX_DETAILS_BYTES].decode("utf-8", "ignore")
    return f"{kept}... ({len(encoded) - MAX_DETAILS_BYTES} more bytes cut)"


class _MalformedInStream(Exception):
    def __init__(self, malformed: Malformed) -> None:
        super().__init__(malformed.details)
        self.malformed = malformed


def _tolerant(deserializer: Callable[[bytes], object]) -> Callable[[bytes], object]:
    type_name = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    type_name = type_name.full_name if type_name is not None else "request"

    def deserialize(body: bytes):
        try:
            return deserializer(body)
        except DecodeError as err:
            return Malformed(type_name, err)

    return deserialize


def _unary_request(behaviour):
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request, context):
            context = _Context(context)
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details)
            async for response in behaviour(request, context):
                yield response

        return streaming

    async def unary(request, context):
        context = _Context(context)
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details)
        return await behaviour(request, context)

    return unary


def _refuse_in_stream(malformed: Malformed):
    raise _MalformedInStream(malformed)


class _Context:
    """The servicer context, with bounded status details, and whose ``read`` hands a
    malformed message to ``on_malformed``."""

    def __init__(self, context, on_malformed: Callable[[Malformed], None] = _refuse_in_stream):
        self._context = context
        self._on_malformed = on_malformed

    async def read(self):
        message = await self._context.read()
        if isinstance(message, Malformed):
            self._on_malformed(message)
        return message

    async def abort(self, code, details: str = "", trailing_metadata=()):
        await self._context.abort(code, bounded(details), trailing_metadata)

    def set_details(self, details: str) -> None:
        self._context.set_details(bounded(details))

    def __getattr__(self, name):
        return getattr(self._context, name)


def _stream_request(behaviour):
    async def requests(iterator, on_malformed):
        async for message in iterator:
            if isinstance(message, Malformed):
                on_malformed(message)
            yield message

    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request_iterator, context):
            try:
                async for response in behaviour(
                    requests(request_iterator, _refuse_in_stream), _Context(context)
                ):
                    yield response
            except _MalformedInStream as err:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, bounded(err.malformed.details)
                )

        return streaming

    async def unary(request_iterator, context):
        # The handler may read from a task of its own: stop the handler itself, so that its
        # clean-up runs, then answer for it.
        seen: list[Malformed] = []
        handler: asyncio.Task | None = None

        def refuse(malformed: Malformed):
            seen.append(malformed)
            handler.cancel()
            raise asyncio.CancelledError

        handler = asyncio.ensure_future(
            behaviour(requests(request_iterator, refuse), _Context(context, refuse))
        )
        try:
            return await handler
        except asyncio.CancelledError:
            if not seen:
                raise
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bounded(seen[0].details))

    return unary


def guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with malformed requests refused with INVALID_ARGUMENT."""
    deserializer = handler.request_deserializer
    if deserializer is None:
        return handler
    changes: dict[str, object] = {"request_deserializer": _tolerant(deserializer)}
    for kind in ("unary_unary", "unary_stream"):
        if getattr(handler, kind) is not None:
            changes[kind] = _unary_request(getattr(handler, kind))
    for kind in ("stream_unary", "stream_stream"):
        if getattr(handler, kind) is not None:
            changes[kind] = _stream_request(getattr(handler, kind))
    return handler._replace(**changes)


class _GuardedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        self._guarded: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details):
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if method not in self._guarded:
            self._guarded[method] = guard(handler)
        return self._guarded[method]


class guarded:
    """``server`` as services register with it: each handler they add is guarded."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(tuple(_GuardedGeneric(h) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self._server.add_registered_method_handlers(
            service, {name: guard(h) for name, h in handlers.items()}
        )

    def __getattr__(self, name):
        return getattr(self._server, name)
