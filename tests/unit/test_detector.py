"""The failure detector through every transition, on a fake clock."""

from __future__ import annotations

import pytest

from coordinator.detector import (
    ArrivalDetector,
    DetectorSettings,
    RegionMonitor,
    RegionState,
)

SETTINGS = DetectorSettings()  # suspect 1.5 s, fail 3 s, 3 reports to recover


def steady(monitor: RegionMonitor, start: float, count: int, every: float = 0.5, problems=()):
    now = start
    for _ in range(count):
        monitor.report(now, problems)
        now += every
    return now - every


def test_pending_until_the_first_report_then_healthy():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    assert monitor.evaluate(10.0).state is RegionState.PENDING
    assert monitor.report(10.0, ()).state is RegionState.HEALTHY


def test_silence_past_the_deadline_is_unhealthy_and_not_before():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    last = steady(monitor, 0.0, 10)
    assert monitor.evaluate(last + 1.5).state is RegionState.HEALTHY
    unhealthy = monitor.evaluate(last + 1.51)
    assert unhealthy.state is RegionState.UNHEALTHY
    assert unhealthy.reason == "no report for over 1.5 s"
    assert unhealthy.since == last + 1.51
    assert not monitor.failed(last + 2.9)
    assert monitor.failed(last + 3.0)


def test_one_late_report_does_not_flap():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    last = steady(monitor, 0.0, 10)
    late = last + 1.4  # almost three intervals
    assert monitor.evaluate(late).state is RegionState.HEALTHY
    assert monitor.report(late, ()).state is RegionState.HEALTHY
    assert monitor.evaluate(late + 0.5).state is RegionState.HEALTHY


def test_recovery_needs_consecutive_good_reports():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    last = steady(monitor, 0.0, 10)
    back = last + 5.0
    assert monitor.evaluate(back).state is RegionState.UNHEALTHY
    first = monitor.report(back, ())
    assert (first.state, first.reason) == (RegionState.UNHEALTHY, "recovering (1/3 good reports)")
    assert monitor.report(back + 0.5, ()).state is RegionState.UNHEALTHY
    assert monitor.report(back + 1.0, ()).state is RegionState.HEALTHY


def test_a_gap_during_recovery_starts_it_again():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    steady(monitor, 0.0, 10)
    monitor.evaluate(20.0)
    monitor.report(20.0, ())
    monitor.report(20.5, ())
    assert monitor.evaluate(22.1).state is RegionState.UNHEALTHY
    assert monitor.report(22.1, ()).reason == "recovering (1/3 good reports)"


def test_problems_degrade_at_once_and_clear_with_hysteresis():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    steady(monitor, 0.0, 4)
    degraded = monitor.report(2.0, ["check api failed: HTTP 503"])
    assert degraded.state is RegionState.DEGRADED
    assert degraded.reason == "check api failed: HTTP 503"
    assert monitor.report(2.5, ()).state is RegionState.DEGRADED
    assert monitor.report(3.0, ()).state is RegionState.DEGRADED
    assert monitor.report(3.5, ()).state is RegionState.HEALTHY


def test_a_degraded_region_that_goes_silent_is_unhealthy():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    steady(monitor, 0.0, 4, problems=["database down: connection refused"])
    assert monitor.evaluate(1.5).state is RegionState.DEGRADED
    assert monitor.evaluate(3.1).state is RegionState.UNHEALTHY


def test_maintenance_and_failover_override_health():
    monitor = RegionMonitor(SETTINGS, now=0.0)
    steady(monitor, 0.0, 4)
    monitor.maintenance = True
    assert monitor.evaluate(100.0).state is RegionState.MAINTENANCE
    monitor.maintenance = False
    monitor.in_failover = True
    assert monitor.evaluate(100.0).state is RegionState.FAILOVER
    monitor.in_failover = False
    assert monitor.evaluate(100.0).state is RegionState.UNHEALTHY


def test_the_deadline_adapts_to_jitter_within_its_bounds():
    detector = ArrivalDetector(SETTINGS)
    assert detector.deadline() == 1.5
    now = 0.0
    for interval in [0.5, 1.3] * 10:  # a very irregular agent
        now += interval
        detector.arrived(now)
    assert 1.5 < detector.deadline() <= 3.0
    regular = ArrivalDetector(SETTINGS)
    for i in range(20):
        regular.arrived(i * 0.5)
    assert regular.deadline() == 1.5


def test_the_deadline_never_exceeds_fail_after():
    detector = ArrivalDetector(SETTINGS)
    now = 0.0
    for interval in [0.1, 2.9] * 10:
        now += interval
        detector.arrived(now)
    assert detector.deadline() == 3.0


def test_settings_are_checked():
    with pytest.raises(ValueError):
        DetectorSettings(suspect_after=4.0, fail_after=3.0)
    with pytest.raises(ValueError):
        DetectorSettings(recover_reports=0)
