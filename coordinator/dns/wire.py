"""Reading and writing the few parts of a DNS message the responder handles as bytes, where a
full dnspython round trip would cost more than the answer: the question section's extent and
a truncated copy of a response."""

from __future__ import annotations

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
