"""The fence lease: its deadline rests on the newest evidence, read on a fake clock."""

from __future__ import annotations

from agent.lease import FenceLease


def lease() -> FenceLease:
    return FenceLease(started_at=10.0, fence_after=4.0)


def test_until_any_evidence_the_deadline_counts_from_the_start():
    assert lease().deadline == 14.0


def test_the_newest_acknowledged_send_time_moves_the_deadline_and_an_older_one_does_not():
    held = lease()
    held.acknowledged(20.0)
    held.acknowledged(18.0)  # an ack of an older report, arriving late
    held.acknowledged(None)
    assert held.deadline == 24.0
    assert not held.failsafe


def test_a_fully_confirmed_round_moves_the_deadline_from_when_it_was_sent():
    held = lease()
    held.acknowledged(20.0)
    held.confirmed(22.5, ("eu-west-1", "ap-southeast-1"))
    assert held.deadline == 26.5
    assert held.failsafe
    report = held.to_proto(25.0)
    assert report.remaining_seconds == 1.5
    assert report.failsafe
    assert list(report.confirmed_by) == ["eu-west-1", "ap-southeast-1"]
    assert report.failsafe_problem == ""


def test_an_unconfirmed_round_leaves_the_deadline_and_says_why():
    held = lease()
    held.confirmed(22.0, ("eu-west-1",))
    held.unconfirmed("ap-southeast-1: not streaming")
    assert held.deadline == 26.0
    report = held.to_proto(30.0)
    assert report.remaining_seconds == 0.0
    assert report.failsafe_problem == "ap-southeast-1: not streaming"


def test_an_ack_newer_than_the_last_round_takes_over():
    held = lease()
    held.confirmed(22.0, ("eu-west-1",))
    held.acknowledged(23.0)
    assert held.deadline == 27.0
    assert not held.failsafe
    assert list(held.to_proto(23.0).confirmed_by) == []


def test_an_older_round_finishing_late_does_not_move_the_deadline_back():
    held = lease()
    held.confirmed(22.0, ("eu-west-1",))
    held.confirmed(21.5, ("eu-west-1",))
    assert held.deadline == 26.0


def test_fence_after_from_the_leader_applies_at_once():
    held = lease()
    held.acknowledged(20.0)
    held.fence_after = 6.0
    assert held.deadline == 26.0
