"""The partition suite's independent monitor judges two writable primaries from the commits it
saw alone: a quick handover is not one, interleaved commits are."""

from __future__ import annotations

from tests.chaos.monitor import Ack, Monitor


def monitor(*acks: tuple[str, float, float]) -> Monitor:
    watched = Monitor.__new__(Monitor)
    watched.acks = [Ack(region, "postgres", i, sent, at) for i, (region, sent, at) in
                    enumerate(acks)]  # fmt: skip
    return watched


def test_a_handover_quicker_than_a_probe_interval_is_not_two_primaries():
    quick = monitor(
        ("us-east-1", 0.000, 0.004),
        ("us-east-1", 0.050, 0.054),  # the last commit on the old primary
        ("eu-west-1", 0.100, 0.104),  # 50 ms later, the first on the new one
        ("eu-west-1", 0.150, 0.154),
    )
    assert quick.overlaps() == []


def test_a_commit_on_the_old_primary_after_one_on_the_new_is_two_primaries():
    both = monitor(
        ("us-east-1", 0.000, 0.004),
        ("eu-west-1", 0.010, 0.014),
        ("us-east-1", 0.050, 0.054),
    )
    [(first, middle, last)] = both.overlaps()
    assert (first.region, middle.region, last.region) == ("us-east-1", "eu-west-1", "us-east-1")


def test_commits_whose_order_is_not_certain_prove_nothing():
    # The middle commit was sent before the first was answered: it may have come first.
    unsure = monitor(
        ("us-east-1", 0.000, 0.030),
        ("eu-west-1", 0.010, 0.040),
        ("us-east-1", 0.035, 0.060),
    )
    assert unsure.overlaps() == []


def test_a_fail_back_seconds_later_is_not_two_primaries():
    back = monitor(("us-east-1", 0.0, 0.004), ("eu-west-1", 5.0, 5.004), ("us-east-1", 9.0, 9.01))
    assert back.overlaps() == []
