"""Response-rate limiting on a fake clock: exact outcomes for a flood, its slips, its
recovery, the keys responses count under, and the bounded table."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import pytest
from prometheus_client import REGISTRY

from coordinator.dns.ratelimit import (
    DROP,
    SEND,
    SLIP,
    RateLimit,
    ResponseLimiter,
    answer_key,
    client_network,
)
from coordinator.dns.responder import Responder
from tests.unit.test_dns_responder import ZONE, Tables, query

CLIENT = client_network("192.0.2.7")
READ = answer_key(b"\x04read\x08latitude\x04test\x00\x00\x01\x00\x01", 0)


def flood(limiter: ResponseLimiter, count: int, at: float, client=CLIENT, answer=READ):
    return [limiter.decide(client, answer, at) for _ in range(count)]


def test_a_burst_within_the_rate_is_all_sent_then_every_second_limited_one_slips():
    limiter = ResponseLimiter(RateLimit(responses_per_second=5, slip=2))
    outcomes = flood(limiter, 11, at=100.0)
    assert outcomes == [SEND] * 5 + [DROP, SLIP, DROP, SLIP, DROP, SLIP]


@pytest.mark.parametrize(
    ("slip", "limited"),
    [(0, [DROP, DROP, DROP]), (1, [SLIP, SLIP, SLIP]), (3, [DROP, DROP, SLIP])],
)
def test_slip_zero_drops_all_one_truncates_all(slip, limited):
    limiter = ResponseLimiter(RateLimit(responses_per_second=2, slip=slip))
    assert flood(limiter, 5, at=0.0) == [SEND, SEND, *limited]


def test_tokens_come_back_at_the_rate_and_at_most_one_second_of_them():
    limiter = ResponseLimiter(RateLimit(responses_per_second=4, slip=0))
    assert flood(limiter, 4, at=10.0) == [SEND] * 4
    assert flood(limiter, 2, at=10.5) == [SEND, SEND]  # half a second: two tokens
    assert flood(limiter, 1, at=10.5) == [DROP]
    # A long quiet spell banks one second's worth, not more.
    assert flood(limiter, 5, at=100.0) == [SEND] * 4 + [DROP]


def test_a_flood_stays_limited_until_it_has_eased_for_the_window():
    limiter = ResponseLimiter(RateLimit(responses_per_second=10, window=2, slip=0))
    flood(limiter, 1000, at=0.0)  # owes the window's worth: 20 tokens, no more
    assert flood(limiter, 1, at=1.9) == [DROP]  # 19 credited, still owing 2 after this one
    assert flood(limiter, 1, at=2.2) == [SEND]


def test_other_networks_and_other_answers_have_their_own_accounts():
    limiter = ResponseLimiter(RateLimit(responses_per_second=1, slip=0))
    write = answer_key(b"\x05write\x08latitude\x04test\x00\x00\x01\x00\x01", 0)
    assert flood(limiter, 2, at=0.0) == [SEND, DROP]
    assert flood(limiter, 1, at=0.0, answer=write) == [SEND]
    assert flood(limiter, 1, at=0.0, client=client_network("192.0.3.7")) == [SEND]
    # The same /24 is the same client, whatever the host.
    assert flood(limiter, 1, at=0.0, client=client_network("192.0.2.200")) == [DROP]


def test_keys():
    assert client_network("192.0.2.7") == b"\x04\xc0\x00\x02"
    assert client_network("::ffff:192.0.2.7") == client_network("192.0.2.9")
    assert client_network("2001:db8:1:2ff::1") == b"\x06" + bytes.fromhex("20010db8000102")
    assert client_network("fe80::1%lo") == b"\x06" + bytes.fromhex("fe800000000000")
    # Case does not make a new answer; NXDOMAIN for any name is one answer; errors by rcode.
    assert answer_key(b"\x04READ\x00", 0) == answer_key(b"\x04read\x00", 0)
    assert answer_key(b"\x01a\x00", 3) == answer_key(b"\x01b\x00", 3) == b"\x03"
    assert answer_key(b"\x01a\x00", 5) == b"\x01\x05" != answer_key(b"", 1)


def test_off_when_the_rate_is_zero():
    limiter = ResponseLimiter(RateLimit(responses_per_second=0))
    assert set(flood(limiter, 1000, at=0.0)) == {SEND}
    assert len(limiter) == 0


def test_the_table_is_bounded_and_forgets_the_least_recently_used():
    limiter = ResponseLimiter(RateLimit(responses_per_second=1, slip=0, accounts=2))
    a, b, c = (client_network(f"198.51.{n}.1") for n in (1, 2, 3))
    assert flood(limiter, 1, at=0.0, client=a) == [SEND]
    assert flood(limiter, 1, at=0.0, client=b) == [SEND]
    assert flood(limiter, 1, at=0.0, client=a) == [DROP]  # a is now the most recent
    assert flood(limiter, 1, at=0.0, client=c) == [SEND]  # b is forgotten
    assert len(limiter) == 2
    assert flood(limiter, 1, at=0.0, client=a) == [DROP]  # a was kept
    assert flood(limiter, 1, at=0.0, client=b) == [SEND]  # b starts afresh


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"responses_per_second": -1}, "responses_per_second: must not be negative, got -1"),
        ({"window": 0.5}, "window: must be at least 1 s, got 0.5"),
        ({"slip": -2}, "slip: must not be negative, got -2"),
        ({"accounts": 0}, "accounts: must be at least 1, got 0"),
    ],
)
def test_bad_limits_name_the_field(settings, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        RateLimit(**settings)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited_responder(clock: Clock, **limit) -> Responder:
    limit.setdefault("responses_per_second", 3)
    return Responder(ZONE, Tables(), rate_limit=RateLimit(**limit), clock=clock)


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("latitude_dns_dropped_packets_total", {"reason": reason}) or 0


def test_the_responder_withholds_a_flood_over_udp_and_slips_truncated_answers():
    clock = Clock()
    found = limited_responder(clock)
    packet = query("read.latitude.test.", subnet="81.2.69.0/24")
    before = dropped("rate_limited"), dropped("rate_limit_slipped")
    replies = [found.respond(packet, "192.0.2.7", udp=True) for _ in range(9)]
    # The first is rendered, the rest are kept answers: both are counted alike.
    assert [r is not None for r in replies] == [True] * 3 + [False, True] * 3
    for reply in replies[:3]:
        assert dns.message.from_wire(reply).answer
    for reply in replies[4::2]:
        slipped = dns.message.from_wire(reply)
        assert slipped.flags & dns.flags.TC and slipped.flags & dns.flags.QR
        assert slipped.id == dns.message.from_wire(packet).id
        assert slipped.question == dns.message.from_wire(packet).question
        assert (slipped.answer, slipped.authority, slipped.additional) == ([], [], [])
    assert (dropped("rate_limited"), dropped("rate_limit_slipped")) == (
        before[0] + 3,
        before[1] + 3,
    )
    # TCP is never limited; another /24 has its own account; once the debt of the six
    # withheld (two seconds' worth) is paid, answers go out again.
    assert found.respond(packet, "192.0.2.7", udp=False) is not None
    assert found.respond(packet, "192.0.3.7", udp=True) is not None
    clock.now += 2
    assert found.respond(packet, "192.0.2.7", udp=True) is None
    clock.now += 1
    assert found.respond(packet, "192.0.2.7", udp=True) is not None


def test_nxdomain_for_any_name_and_refusals_count_per_network():
    clock = Clock()
    found = limited_responder(clock, responses_per_second=2, slip=0)
    names = [f"nothing-{n}.latitude.test." for n in range(4)]
    sent = [found.respond(query(n), "192.0.2.7", udp=True) for n in names]
    assert [s is not None for s in sent] == [True, True, False, False]
    rcode = dns.message.from_wire(sent[0]).rcode()
    assert rcode == dns.rcode.NXDOMAIN
    outside = [found.respond(query(f"{n}.example."), "192.0.2.8", udp=True) for n in "abc"]
    assert [s is not None for s in outside] == [True, True, False]
    unreadable = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03abc"
    formerr = [found.respond(unreadable, "192.0.2.9", udp=True) for _ in range(3)]
    assert [f is not None for f in formerr] == [True, True, False]
    # Still answered when the limit is off.
    assert Responder(ZONE, Tables()).respond(query(names[0]), "192.0.2.7", udp=True)
