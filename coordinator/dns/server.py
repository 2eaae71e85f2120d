"""The DNS listeners: UDP and TCP on one host:port, served from the coordinator's event loop.

Everything a packet needs is in memory (``Responder``), so a query is answered in the
callback that receives it: nothing waits, and nothing is queued per packet. Bounded:

- UDP: a reply that would grow the socket's send buffer past ``UDP_BUFFER_BYTES`` is dropped
  (a client that does not read its answers cannot make us hold them);
- TCP (RFC 7766): at most ``TCP_CLIENTS`` connections (more are closed at once), each idle
  at most ``TCP_IDLE_SECONDS`` between queries, a query at most 64 KiB by its length prefix,
  its answers written before the next is read;
- no exception escapes to the loop: a bug answering one packet is logged, that packet is
  dropped, and the server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

from coordinator.dns import metrics
from coordinator.dns.responder import Responder
from latitude.netaddr import join_host_port, parse_host_port

log = logging.getLogger(__name__)

UDP_BUFFER_BYTES = 256 * 1024
TCP_CLIENTS = 256
TCP_IDLE_SECONDS = 10.0


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self._responder = responder
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            reply = self._responder.respond(data, addr[0], udp=True)
            if reply is None:
                return
            if self._transport.get_write_buffer_size() > UDP_BUFFER_BYTES:
                metrics.dropped("busy")
                return
            self._transport.sendto(reply, addr)
        except Exception:
            log.exception("DNS: answering a datagram from %s failed; dropped", addr[0])

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable for an earlier reply: the client went away. Nothing to do.
        log.debug("DNS: %s", exc)


class DnsServer:
    def __init__(self, address: str, responder: Responder) -> None:
        self._host, self._port = parse_host_port(address, "dns_address", any_port=True)
        self.responder = responder
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        """host:port served (the port chosen when 0 was asked for)."""
        return join_host_port(self._host, self._port)

    async def start(self) -> None:
        # Port 0: TCP must take the port the UDP socket got, which some TCP socket may hold
        # already; then another port is drawn (an explicit port's conflict is the caller's).
        attempts = 20 if self._port == 0 else 1
        for attempt in range(attempts):
            try:
                await self._bind(self._port if attempts == 1 else 0)
                break
            except OSError as err:
                if err.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
        log.info("DNS for %s on %s (UDP and TCP)", self.responder.zone.origin, self.address)

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self.responder), local_addr=(self._host, port), family=family
        )
        bound = self._udp.get_extra_info("sockname")[1]
        try:
            self._tcp = await asyncio.start_server(
                self._serve_connection, self._host, bound, family=family, reuse_address=True
            )
        except BaseException:
            self._udp.close()
            self._udp = None
            raise
        self._port = bound

    async def _serve_connection(self, reader, writer) -> None:
        if len(self._clients) >= TCP_CLIENTS:
            metrics.dropped("busy")
            writer.close()
            return
        task = asyncio.current_task()
        self._clients.add(task)
        peer = (writer.get_extra_info("peername") or ("",))[0]
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_SECONDS):
                    length = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(length)
                reply = self.responder.respond(data, peer, udp=False)
                if reply is None:
                    return  # nothing to say to a packet we drop: the connection goes too
                writer.write(len(reply).to_bytes(2, "big") + reply)
                async with asyncio.timeout(TCP_IDLE_SECONDS):
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client closed, stalled or went away
        except Exception:
            log.exception("DNS: serving a TCP client at %s failed; closing it", peer)
        finally:
            self._clients.discard(task)
            writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._clients):
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._tcp.wait_closed()
        self.responder.close()
