"""Reading and writing the few parts of a DNS message the responder handles as bytes, where a
full dnspython round trip would cost more than the answer: the question section's extent and
a truncated copy of a response."""

from __future__ import annotations

from dataclasses import dataclass

HEADER_BYTES = 12
TC = 0x0200
POINTER = 0xC0


def question_end(wire: bytes) -> int:
    """Where the question section of ``wire`` (a message dnspython or we rendered, QDCOUNT 0
    or 1) ends: just past the header when there is none."""
    if len(wire) < HEADER_BYTES or not wire[4] | wire[5]:
        return HEADER_BYTES
    at = HEADER_BYTES
    while True:
        length = wire[at]
        if length == 0:
            return at + 5  # the root label, then type and class
        if length >= POINTER:
            return at + 6
        at += length + 1


def truncated(response: bytes) -> bytes:
    """``response`` with TC set and nothing after its question (no OPT either): what a client
    that should ask again over TCP is sent."""
    end = question_end(response)
    flags = int.from_bytes(response[2:4], "big") | TC
    count = 1 if end > HEADER_BYTES else 0
    header = response[:2] + flags.to_bytes(2, "big") + count.to_bytes(2, "big") + bytes(6)
    return header + response[HEADER_BYTES:end]


QR = 0x8000
OPCODE = 0x7800
CLASS_IN = 1
OPT = 41
ECS = 8
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Query:
    """A plain query, read without dnspython."""

    # The question section as sent (case kept: the response echoes it).
    question: bytes
    # The question name's labels, then the root's empty one (dns.name.Name's form).
    labels: tuple[bytes, ...]
    rdtype: int
    # Whether it had an OPT record (EDNS version 0), and the UDP payload size it advertised.
    edns: bool
    payload: int
    # Its EDNS Client Subnet option's data as sent (family, prefixes, address); None: none.
    subnet: bytes | None


def read_query(data: bytes) -> Query | None:
    """``data`` as a ``Query`` when it is the plain kind resolvers send (opcode QUERY, one
    question of class IN, no other records but an OPT of EDNS version 0 whose only option, if
    any, is a well-formed Client Subnet, and nothing after); None for anything else, which
    dnspython then reads, answers or refuses as before. Nothing here decides an error: a
    doubt is a None."""
    # QR clear and opcode QUERY (other flag bits follow the response's own rules); exactly one
    # question, no answer or authority records.
    if len(data) < HEADER_BYTES + 5 or data[2] & 0xF8 or data[4:10] != b"\x00\x01" + bytes(4):
        return None
    additional = int.from_bytes(data[10:12], "big")
    if additional > 1:
        return None
    at = HEADER_BYTES
    labels = []
    end = len(data)
    while True:
        if at >= end:
            return None
        length = data[at]
        if length == 0:
            break
        if length > 63 or at + 1 + length > end:
            return None  # a compression pointer or an overrun
        labels.append(data[at + 1 : at + 1 + length])
        at += length + 1
    if at + 5 - HEADER_BYTES > MAX_NAME + 4 or at + 5 > end:
        return None
    rdtype = int.from_bytes(data[at + 1 : at + 3], "big")
    if data[at + 3 : at + 5] != b"\x00\x01":
        return None
    question_end = at + 5
    labels.append(b"")
    if not additional:
        if question_end != end:
            return None
        return Query(data[HEADER_BYTES:question_end], tuple(labels), rdtype, False, 0, None)
    # The OPT record: root name, type 41, class = payload, TTL = extended rcode, version, flags.
    opt = data[question_end:]
    if len(opt) < 11 or opt[0] != 0 or opt[1:3] != b"\x00\x29" or opt[6] != 0:
        return None  # not an OPT, or EDNS past version 0
    payload = int.from_bytes(opt[3:5], "big")
    length = int.from_bytes(opt[9:11], "big")
    options = opt[11:]
    if len(options) != length:
        return None
    subnet = None
    if options:
        code = int.from_bytes(options[0:2], "big")
        size = int.from_bytes(options[2:4], "big")
        if code != ECS or size + 4 != len(options) or size < 4:
            return None  # another option, or more than one: dnspython's to read
        subnet = options[4:]
        if not _well_formed_subnet(subnet):
            return None
    return Query(data[HEADER_BYTES:question_end], tuple(labels), rdtype, True, payload, subnet)


def _well_formed_subnet(subnet: bytes) -> bool:
    """RFC 7871 section 6, as dnspython reads it: a known family, prefixes within its width,
    just the source prefix's bytes of address, zero bits past it."""
    family, source, scope = int.from_bytes(subnet[0:2], "big"), subnet[2], subnet[3]
    bits = {1: 32, 2: 128}.get(family)
    if bits is None or source > bits or scope > bits:
        return False
    address = subnet[4:]
    if len(address) != (source + 7) // 8:
        return False
    rest = source % 8
    return not (rest and address[-1] & (0xFF >> rest))


def subnet_echo(subnet: bytes, scope: int) -> bytes:
    """The Client Subnet option to answer ``subnet`` (a query's option data) with: the same
    family, source prefix and address, and ``scope`` (RFC 7871 7.2.1)."""
    data = subnet[:3] + bytes((scope,)) + subnet[4:]
    return ECS.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def opt_record(payload: int, options: bytes) -> bytes:
    """An OPT record of EDNS version 0, no flags, advertising ``payload``, with ``options``."""
    return (
        b"\x00\x00\x29"
        + payload.to_bytes(2, "big")
        + bytes(4)
        + len(options).to_bytes(2, "big")
        + options
    )
