"""A fake grpc.aio.ServicerContext for driving AgentService.Connect in process, with or
without a TLS peer identity, and a recorder of the events it records."""

from __future__ import annotations

import grpc


class Aborted(Exception):
    pass


class Context:
    """What AgentService.Connect asks of a grpc.aio.ServicerContext, over TLS or not."""

    def __init__(self, messages, uri: str | None, *, tls: bool = True) -> None:
        self._messages = list(messages)
        self.auth = {}
        if tls:
            self.auth["transport_security_type"] = [b"ssl"]
        if uri is not None:
            self.auth["peer_uri"] = [uri.encode()]
        self.written = []
        self.status = None

    def auth_context(self):
        return self.auth

    def peer(self) -> str:
        return "ipv4:10.9.9.9:40000"

    async def read(self):
        return self._messages.pop(0) if self._messages else grpc.aio.EOF

    async def write(self, message) -> None:
        self.written.append(message)

    async def abort(self, code, details):
        self.status = (code, details)
        raise Aborted(details)


class Events:
    def __init__(self) -> None:
        self.recorded = []

    def record(self, kind, severity=0, **fields) -> None:
        self.recorded.append((kind, fields))
