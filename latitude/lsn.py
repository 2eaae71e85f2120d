"""PostgreSQL WAL positions (LSNs): numbers on the wire, "16/B374D848" for people."""

from __future__ import annotations


def format_lsn(lsn: int) -> str:
    """The byte position as PostgreSQL writes it: high and low 32 bits in hex."""
    lsn = int(lsn)
    return f"{lsn >> 32:X}/{lsn & 0xFFFF_FFFF:X}"


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> its byte position in the WAL."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
