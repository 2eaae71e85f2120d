"""PostgreSQL's two string syntaxes the agent writes: libpq conninfo and postgresql.conf values.

FOLLOW rewrites a standby's primary_conninfo, REJOIN writes one (and the source it gives
pg_rewind), and a conninfo ends up inside postgresql.auto.conf. The two syntaxes escape a quote
differently (conninfo with a backslash, postgresql.conf by doubling it), and a value may hold a
path or a password, so each is written here once rather than wherever a string is built.
"""

from __future__ import annotations

import re

from latitude.errors import LatitudeError

# key = value in libpq's conninfo syntax: a value is single-quoted or bare, \ escapes anywhere.
_CONNINFO_PAIR = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|(?!')(?:[^\s\\]|\\.)+)")


class ConninfoError(LatitudeError):
    """A primary_conninfo this agent cannot rewrite; the message never quotes it (it may hold
    a password)."""


def format_conninfo(*pairs: tuple[str, str]) -> str:
    """libpq's key='value' ..., backslash-escaped."""
    return " ".join(f"{key}={_quote(value)}" for key, value in pairs)


def parse_conninfo(text: str) -> list[tuple[str, str]]:
    """libpq's ``key = value ...``: values bare or single-quoted, with backslash escapes."""
    if text.lstrip().startswith(("postgresql://", "postgres://")):
        raise ConninfoError("primary_conninfo is a URI; only key=value conninfo can be rewritten")
    pairs, at, text = [], 0, text.rstrip()
    while at < len(text):
        pair = _CONNINFO_PAIR.match(text, at)
        if pair is None:  # not quoting the text: it may hold a password
            raise ConninfoError(f"primary_conninfo is malformed at character {at + 1}")
        key, value = pair.groups()
        value = value[1:-1] if value.startswith("'") else value
        pairs.append((key, re.sub(r"\\(.)", r"\1", value)))
        at = pair.end()
    return pairs


def follow_conninfo(
    current: str, host: str, port: int, tls: tuple[tuple[str, str], ...] = ()
) -> str:
    """``current`` with the new host and port, everything else (user, passfile,
    application_name, ...) kept. hostaddr goes too: libpq would connect to it, not to host.
    ``tls`` (sslmode, sslrootcert: agent.rejoin.LocalServer.tls_pairs) replaces what it said."""
    replaced = ("host", "hostaddr", "port", *(key for key, _ in tls))
    kept = [(k, v) for k, v in parse_conninfo(current) if k not in replaced]
    return format_conninfo(("host", host), ("port", str(port)), *kept, *tls)


def guc_quote(value: str) -> str:
    """A string in postgresql.conf's syntax, as ALTER SYSTEM writes it."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
