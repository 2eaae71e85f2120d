"""Response-rate limiting (RRL) for the DNS responder over UDP: pure, driven by the caller's
clock, so that its unit tests run on a fake one.

Why: a UDP query's source address can be forged, and an authoritative server answers a short
question with a longer answer; without a limit it amplifies a flood towards whoever the
forged address names, and one source can make it answer as fast as it can. The limit is the
one mature authoritative servers apply: per client network (the source's /24, or /56 for
IPv6: a forger moving within one network gains nothing) and per answer (the same name and
type, or, for NXDOMAIN, the same zone, so that random names count together; errors and
REFUSED per response code), an account of tokens credited at ``responses_per_second``, at most
one second's worth banked. Each response takes a token, sent or not, and an account may owe
up to ``window`` seconds' worth: a client that keeps flooding stays limited until its rate has
been under the limit for that long. Over the limit, most responses are dropped and every
``slip``-th is sent truncated (TC, no answer): a real client behind that network retries over
TCP, which needs a handshake a forger cannot complete and is never limited.

Bounded: at most ``accounts`` accounts, the least recently used forgotten first (an account
forgotten is one that has not been asked for lately, so it would have refilled anyway). A
decision is a dict lookup and a little arithmetic.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

SEND, DROP, SLIP = "send", "drop", "slip"
# The networks a client's responses are counted for (BIND's and NSD's defaults).
CLIENT_PREFIX = {4: 24, 6: 56}


@dataclass(frozen=True, slots=True)
class RateLimit:
    # Responses per second per client network and answer; 0 turns the limit off.
    responses_per_second: float = 20.0
    # Seconds of debt an account may run up: how long a flood stays limited after it eases.
    window: float = 15.0
    # Every slip-th limited response goes out truncated; 0: all are dropped, 1: none is.
    slip: int = 2
    # Accounts kept (about 200 bytes each).
    accounts: int = 65536

    def __post_init__(self) -> None:
        if self.responses_per_second < 0:
            raise ValueError(
                f"responses_per_second: must not be negative, got {self.responses_per_second}"
            )
        if self.window < 1:
            raise ValueError(f"window: must be at least 1 s, got {self.window}")
        if self.slip < 0:
            raise ValueError(f"slip: must not be negative, got {self.slip}")
        if self.accounts < 1:
            raise ValueError(f"accounts: must be at least 1, got {self.accounts}")


class ResponseLimiter:
    """Not thread-safe: one event loop answers the UDP queries."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.enabled = limit.responses_per_second > 0
        self._rate = limit.responses_per_second
        self._floor = -limit.responses_per_second * limit.window
        # key -> [tokens, when last credited, responses limited so far]
        self._accounts: OrderedDict[bytes, list] = OrderedDict()

    def __len__(self) -> int:
        return len(self._accounts)

    def decide(self, client: bytes, answer: bytes, now: float) -> str:
        """SEND, DROP or SLIP for a response ``answer`` (its ``answer_key``) to a client in
        network ``client`` (its ``client_network``) at ``now`` (seconds, monotonic)."""
        if not self.enabled:
            return SEND
        key = client + answer
        accounts = self._accounts
        account = accounts.get(key)
        rate = self._rate
        if account is None:
            if len(accounts) >= self.limit.accounts:
                accounts.popitem(last=False)
            accounts[key] = [rate - 1.0, now, 0]
            return SEND
        accounts.move_to_end(key)
        tokens = account[0] + (now - account[1]) * rate
        if tokens > rate:
            tokens = rate
        tokens -= 1.0
        if tokens < self._floor:
            tokens = self._floor
        account[0], account[1] = tokens, now
        if tokens >= 0:
            return SEND
        account[2] += 1
        slip = self.limit.slip
        return SLIP if slip and account[2] % slip == 0 else DROP


def client_network(source: str) -> bytes:
    """The network ``source`` (an IP address as text) is counted in, as a short key."""
    ip = ipaddress.ip_address(source.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = CLIENT_PREFIX[ip.version]
    network = ipaddress.ip_network((ip, prefix), strict=False)
    # The family first: a v4 network's key is never the start of a v6 one's.
    return bytes((ip.version,)) + network.network_address.packed[: prefix // 8]


def answer_key(question: bytes, rcode: int) -> bytes:
    """What responses count together: ``question`` (the query's question section as sent;
    case does not matter) for an answer or NODATA, the zone for NXDOMAIN (one zone is served,
    so any question), the response code alone for the rest (REFUSED, FORMERR, SERVFAIL...)."""
    if rcode == 0:
        return b"\x00" + question.lower()
    if rcode == 3:
        return b"\x03"
    return b"\x01" + bytes((rcode & 0xFF,))
