"""The DNS responder's metrics: queries by type and response code with the time each took,
and the packets dropped unanswered, by why.

Timed as Resolve is (coordinator/metrics/resolve.py's ``Resolved``: plain numbers, no lock,
everything on the coordinator's one event loop), since a kept answer costs little more than
the observation. Label values come from fixed sets, never from the packets: a query type
outside ``TYPES`` counts as "other", so the series stay bounded whatever is sent.
"""

from __future__ import annotations

import itertools
import math

import dns.rcode
import dns.rdatatype
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from coordinator.metrics.resolve import BUCKETS, Resolved

NAME = "latitude_dns_query_duration_seconds"
HELP = (
    "DNS queries this replica answered, by query type and response code (lower case), and the "
    "time each took from the packet's arrival to the answer (a kept answer: one dict lookup)"
)
TYPES = ("A", "AAAA", "SRV", "TXT", "SOA", "NS", "ANY")
_BOUNDS = [floatToGoString(b) for b in (*BUCKETS, math.inf)]

DROPPED = Counter(
    "latitude_dns_dropped_packets",
    "DNS packets dropped unanswered, by why: malformed (no readable header), response (a "
    "response sent to the server), oversized, busy (a full send buffer or too many TCP "
    "clients), rate_limited (over dns_rate_limit: dropped), rate_limit_slipped (over it: sent "
    "truncated instead, so that a real client asks again over TCP)",
    ["reason"],
)


class DnsTimings(Collector):
    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], Resolved] = {}
        # (rdtype, rcode) -> its pair: label texts are not made again for every query.
        self._by_code: dict[tuple[int, int], Resolved] = {}

    def pair(self, rdtype: int, rcode: int) -> Resolved:
        """Where a query of ``rdtype`` answered ``rcode`` is counted (-1: no question)."""
        found = self._by_code.get((rdtype, rcode))
        if found is not None:
            return found
        labels = (_type(rdtype), _rcode(rcode))
        found = self._pairs.get(labels)
        if found is None:
            found = self._pairs[labels] = Resolved(*labels)
        if len(self._by_code) < 65536:  # types and rcodes are the sender's to choose
            self._by_code[(rdtype, rcode)] = found
        return found

    def describe(self):
        return [HistogramMetricFamily(NAME, HELP, labels=["type", "rcode"])]

    def collect(self):
        family = HistogramMetricFamily(NAME, HELP, labels=["type", "rcode"])
        for pair in list(self._pairs.values()):
            cumulative = itertools.accumulate(pair.counts)
            family.add_metric(pair.labels, list(zip(_BOUNDS, cumulative, strict=True)), pair.sum)
        yield family


def _type(rdtype: int) -> str:
    if rdtype < 0:
        return "none"
    text = dns.rdatatype.to_text(rdtype)
    return text if text in TYPES else "other"


def _rcode(rcode: int) -> str:
    try:
        return dns.rcode.to_text(rcode).lower()
    except ValueError:
        return "other"


TIMINGS = DnsTimings()
REGISTRY.register(TIMINGS)


def dropped(reason: str) -> None:
    DROPPED.labels(reason).inc()
