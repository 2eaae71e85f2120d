from __future__ import annotations

from coordinator.lag import PrimaryHistory
from latitude.v1 import common_pb2

S = 1_000_000_000  # nanoseconds per second


def primary(at: float, lsn: int, beat: float | None) -> common_pb2.DatabaseStatus:
    db = common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_PRIMARY, current_lsn=lsn)
    db.observed_at.FromNanoseconds(int(at * S))
    if beat is not None:
        db.heartbeat_at.FromNanoseconds(int(beat * S))
    return db


def standby(at: float, replayed: int, beat: float | None, own: float = 0.7):
    db = common_pb2.DatabaseStatus(
        role=common_pb2.DATABASE_ROLE_STANDBY, replayed_lsn=replayed, replay_lag_seconds=own
    )
    db.observed_at.FromNanoseconds(int(at * S))
    if beat is not None:
        db.heartbeat_at.FromNanoseconds(int(beat * S))
    return db


def history(*samples) -> PrimaryHistory:
    h = PrimaryHistory()
    for sample in samples:
        h.record(sample)
    return h


def test_a_caught_up_standby_is_not_charged_for_what_the_primary_wrote_since():
    h = history(primary(10.0, 1000, 10.0), primary(10.5, 1176, 10.5))
    # Observed at 10.4: it had everything the primary had at 10.0.
    assert h.lag(standby(10.4, 1000, 10.0)) == (0, 0.0)


def test_a_lagging_standby_is_measured_in_bytes_and_heartbeat_seconds():
    h = history(primary(10.0, 1000, 10.0), primary(12.0, 9000, 12.0))
    assert h.lag(standby(12.2, 4000, 9.5)) == (5000, 2.5)


def test_without_heartbeats_the_agents_estimate_is_used():
    h = history(primary(10.0, 1000, None))
    assert h.lag(standby(10.2, 500, None, own=0.7)) == (500, 0.7)
    assert PrimaryHistory().lag(standby(10.2, 500, 9.0, own=0.3)) == (0, 0.3)


def test_a_standby_observed_before_any_primary_sample_uses_the_oldest():
    h = history(primary(10.0, 1000, 10.0))
    assert h.lag(standby(9.0, 800, 9.5)) == (200, 0.5)


def test_a_clock_step_back_starts_the_history_over():
    h = history(primary(10.0, 1000, 10.0), primary(5.0, 2000, 5.0))
    assert h.as_of(20 * S).current_lsn == 2000
    assert h.as_of(7 * S).current_lsn == 2000
