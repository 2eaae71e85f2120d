"""One DNS packet in, at most one out: parsing and rendering with dnspython, the answer from
``coordinator.dns.answer``, and the rendered answers kept per table version.

The hot path. An answer is a pure function of the query's bytes after its ID, the client's
network (ECS, else the source's /24 or /48), the transport and the table, so the rendered
response is kept under exactly that key (coordinator/routing/answers.py's ``AnswerCache``:
bounded in bytes and entries, a key over 512 bytes never kept, emptied when the table
changes). A repeated query costs a dict lookup and the ID spliced in: no parse, no decision,
no rendering.

A query not answered before (a client network never seen, each one with ECS) in the shape
resolvers send (``wire.read_query``) is answered without dnspython's message parsing and
rendering, the costliest part of a miss: its decision's answer is shared by every network
routed alike (``answer``'s memo), its records rendered once per question and answer, the
header, question and OPT spliced around them as bytes. Everything else takes the general
path through ``dns.message``, which gives the same bytes.

Bounds and bad input: a datagram over ``MAX_QUERY_BYTES`` or without a 12-byte header is
dropped, as is a response sent to us (no reflection loops). A packet whose header reads but
whose body does not (dnspython refuses it, or it carries two ECS options) gets FORMERR with
its ID; an opcode other than QUERY NOTIMP; EDNS past version 0 BADVERS; a class other than IN
REFUSED. Over UDP, an answer larger than the client's payload size (512 bytes without EDNS,
else what it advertised, at most ``UDP_PAYLOAD``) goes out empty with TC set, and the client
asks again over TCP.

Over UDP every response, kept or rendered, passes the rate limiter (``ratelimit``) last: it is
sent, dropped, or sent truncated so that a real client retries over TCP, which is never
limited.
"""

from __future__ import annotations

import logging
import time

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.renderer

from coordinator.dns import ecs, metrics, ratelimit, wire
from coordinator.dns.answer import Zone, answer
from coordinator.routing.answers import AnswerCache
from latitude.routing.locating import TableLocator

log = logging.getLogger(__name__)

# Larger queries are not DNS questions (an ordinary one is under 100 bytes).
MAX_QUERY_BYTES = 4096
HEADER_BYTES = wire.HEADER_BYTES
# The EDNS payload size we advertise and accept at most over UDP (the DNS flag day 2020 figure:
# no IP fragmentation on ordinary paths).
UDP_PAYLOAD = 1232
PLAIN_UDP = 512
TCP_MAX = 65535
# Rendered answers kept for the table served, in bytes.
ANSWER_BYTES = 8 * 1024 * 1024
# Source addresses whose network key is remembered (emptied when full).
_SOURCES_KEPT = 65536
# Question names and rendered records kept for the plain path (emptied when full): the names
# asked and the decisions seen are few; a flood of random names must not grow them.
_RENDERINGS_KEPT = 4096
_KEPT_RCODES = (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED)


class Responder:
    """Not thread-safe: one event loop serves the UDP and TCP listeners."""

    def __init__(
        self,
        zone: Zone,
        tables,
        *,
        mmdb_path: str = "",
        rate_limit: ratelimit.RateLimit | None = None,
        clock=time.monotonic,
    ) -> None:
        """``tables``: the replica's ``TableCache`` (its ``resolver`` follows the table);
        ``rate_limit``: how UDP responses are limited (None: not at all); ``clock``: the
        limiter's, in seconds."""
        self.zone = zone
        self.limiter = ratelimit.ResponseLimiter(
            rate_limit or ratelimit.RateLimit(responses_per_second=0)
        )
        self._clock = clock
        self._tables = tables
        self._locator = TableLocator(mmdb_path)
        self.answers = AnswerCache(max_bytes=ANSWER_BYTES)
        self._answers_for: object = None
        # For the table served: answers by what they show of the decision (answer's memo),
        # and their rendering after the question by (question, answer).
        self._memo: dict = {}
        self._bodies: dict[tuple[bytes, int], tuple] = {}
        self._names: dict[bytes, dns.name.Name] = {}
        # source address -> (its network as an answer key part, its rate-limited network)
        self._sources: dict[str, tuple[bytes, bytes]] = {}

    def respond(self, data: bytes, source: str, *, udp: bool) -> bytes | None:
        """The response to ``data`` from ``source`` (an IP address); None: drop it."""
        started = time.perf_counter()
        if not HEADER_BYTES <= len(data) <= MAX_QUERY_BYTES:
            metrics.dropped("malformed" if len(data) < HEADER_BYTES else "oversized")
            return None
        resolver = self._tables.resolver
        if resolver is not self._answers_for:
            self._answers_for = resolver
            self.answers.clear()
            self._memo.clear()
            self._bodies.clear()
        known = self._sources.get(source)
        if known is None:
            known = self._source_key(source)
        key = (b"u" if udp else b"t") + known[0] + data[2:]
        kept = self.answers.get(key)
        if kept is not None:
            kept[1].done(started)
            if udp and self.limiter.enabled:
                return self._limit(data[:2] + kept[0], known[1], kept[2])
            return data[:2] + kept[0]
        response, rdtype, rcode = self._render(data, source, udp, resolver)
        if response is None:
            return None
        timing = metrics.TIMINGS.pair(rdtype, rcode)
        timing.done(started)
        counted = ratelimit.answer_key(
            response[wire.HEADER_BYTES : wire.question_end(response)], rcode
        )
        if rcode in _KEPT_RCODES and self._tables.resolver is resolver and resolver is not None:
            self.answers.keep(key, (response[2:], timing, counted), len(response))
        if udp and self.limiter.enabled:
            return self._limit(response, known[1], counted)
        return response

    def _limit(self, response: bytes, network: bytes, counted: bytes) -> bytes | None:
        decision = self.limiter.decide(network, counted, self._clock())
        if decision == ratelimit.SEND:
            return response
        if decision == ratelimit.SLIP:
            metrics.dropped("rate_limit_slipped")
            return wire.truncated(response)
        metrics.dropped("rate_limited")
        return None

    def _source_key(self, source: str) -> tuple[bytes, bytes]:
        if len(self._sources) >= _SOURCES_KEPT:
            self._sources.clear()
        where = ecs.key_bytes(ecs.client_subnet((), source))
        known = self._sources[source] = (where, ratelimit.client_network(source))
        return known

    def _render(self, data: bytes, source: str, udp: bool, resolver):
        """(response wire or None, query type or -1, rcode)."""
        flags = int.from_bytes(data[2:4], "big")
        if flags & dns.flags.QR:
            metrics.dropped("response")
            return None, -1, 0
        plain = wire.read_query(data)
        if plain is not None:
            found = self._plain(data, plain, source, udp, resolver)
            if found is not None:
                return found
        try:
            query = dns.message.from_wire(data)
        except Exception:  # dnspython refuses it in many ways; the header is what we answer
            return _bare(data, dns.rcode.FORMERR), -1, dns.rcode.FORMERR
        if query.opcode() != dns.opcode.QUERY:
            return _bare(data, dns.rcode.NOTIMP), -1, dns.rcode.NOTIMP
        if len(query.question) != 1:
            return _bare(data, dns.rcode.FORMERR), -1, dns.rcode.FORMERR
        question = query.question[0]
        rdtype = question.rdtype
        response = dns.message.make_response(query, our_payload=UDP_PAYLOAD)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return self._wire(response, query, udp), rdtype, dns.rcode.BADVERS
        try:
            subnet = ecs.client_subnet(query.options, source)
        except ValueError:
            return _bare(data, dns.rcode.FORMERR), rdtype, dns.rcode.FORMERR
        if question.rdclass != dns.rdataclass.IN:
            found = None
            rcode = dns.rcode.REFUSED
        else:
            client = None
            if resolver is not None:
                client = self._locator.locate(resolver.table, subnet.address, None)
            found = answer(self.zone, question.name, rdtype, resolver, client)
            rcode = found.rcode
        response.set_rcode(rcode)
        if found is not None:
            if rcode != dns.rcode.REFUSED:
                response.flags |= dns.flags.AA
            response.answer.extend(found.answer)
            response.authority.extend(found.authority)
            response.additional.extend(found.additional)
            echo = subnet.echo(found.located)
            if echo is not None and query.edns == 0:
                response.use_edns(0, 0, UDP_PAYLOAD, options=[echo])
        return self._wire(response, query, udp), rdtype, rcode

    def _plain(self, data: bytes, query: wire.Query, source: str, udp: bool, resolver):
        """The response to a plain query (``wire.read_query``) without a dnspython message
        either way: the header and question from the query, the records after them rendered
        once per (question, answer) and the answer itself shared by every network routed
        alike; the OPT record and its Client Subnet echo put on as bytes. The same bytes as
        the general path (a unit test compares them); None when the answer does not fit in
        UDP (the general path truncates it)."""
        name = self._names.get(query.question)
        if name is None:
            if len(self._names) >= _RENDERINGS_KEPT:
                self._names.clear()
            name = self._names[query.question] = dns.name.Name(query.labels)
        address, scope = ecs.located_by(query.subnet, source)
        client = None
        if resolver is not None:
            client = self._locator.locate(resolver.table, address, None)
        found = answer(self.zone, name, query.rdtype, resolver, client, self._memo)
        rendered = self._bodies.get((query.question, id(found)))
        if rendered is None or rendered[0] is not found:
            rendered = self._render_body(query, name, found)
        _, flags, counts, body = rendered
        flags |= int.from_bytes(data[2:4], "big") & dns.flags.RD
        additional = counts[2]
        opt = b""
        if query.edns:
            additional += 1
            echo = b""
            if query.subnet is not None:
                echo = wire.subnet_echo(query.subnet, scope if found.located else 0)
            opt = wire.opt_record(UDP_PAYLOAD, echo)
        response = b"".join(
            (
                data[:2],
                flags.to_bytes(2, "big"),
                b"\x00\x01",
                counts[0].to_bytes(2, "big"),
                counts[1].to_bytes(2, "big"),
                additional.to_bytes(2, "big"),
                query.question,
                body,
                opt,
            )
        )
        limit = TCP_MAX
        if udp:
            limit = min(max(query.payload, PLAIN_UDP), UDP_PAYLOAD) if query.edns else PLAIN_UDP
        if len(response) > limit:
            return None
        return response, query.rdtype, found.rcode

    def _render_body(self, query: wire.Query, name: dns.name.Name, found) -> tuple:
        """(found, flags but RD, section counts, the records after the question)."""
        renderer = dns.renderer.Renderer(0, 0, TCP_MAX)
        renderer.add_question(name, query.rdtype, dns.rdataclass.IN)
        for section, rrsets in (
            (dns.renderer.ANSWER, found.answer),
            (dns.renderer.AUTHORITY, found.authority),
            (dns.renderer.ADDITIONAL, found.additional),
        ):
            for rrset in rrsets:
                renderer.add_rrset(section, rrset, want_shuffle=False)
        renderer.write_header()
        rendered = renderer.get_wire()
        flags = dns.flags.QR | (found.rcode & 0xF)
        if found.rcode != dns.rcode.REFUSED:
            flags |= dns.flags.AA
        counts = tuple(int.from_bytes(rendered[at : at + 2], "big") for at in (6, 8, 10))
        entry = (found, flags, counts, rendered[HEADER_BYTES + len(query.question) :])
        if found.shared:  # an answer made for this query alone is not asked for again
            if len(self._bodies) >= _RENDERINGS_KEPT:
                self._bodies.clear()
            self._bodies[(query.question, id(found))] = entry
        return entry

    def _wire(self, response: dns.message.Message, query: dns.message.Message, udp: bool):
        # Records in the order decided (dnspython shuffles an RRset's by default): the best
        # region first.
        limit = TCP_MAX
        if udp and query.edns >= 0:
            limit = min(max(query.payload, PLAIN_UDP), UDP_PAYLOAD)
        elif udp:
            limit = PLAIN_UDP
        try:
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            # Nothing partial: the question, TC, and the OPT record; the client retries on TCP.
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit, want_shuffle=False)

    def close(self) -> None:
        self._locator.close()


def _bare(data: bytes, rcode: int) -> bytes:
    """A response of just a header (the query's ID, opcode and RD) with ``rcode``: for a
    packet whose body we do not answer."""
    flags = int.from_bytes(data[2:4], "big")
    message = dns.message.Message(id=int.from_bytes(data[:2], "big"))
    message.flags = dns.flags.QR | (flags & (dns.flags.RD | 0x7800))
    message.set_rcode(rcode)
    return message.to_wire()
