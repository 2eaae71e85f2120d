"""Failure detection from report arrivals: pure code, driven by the ``now`` it is given.

An adaptive deadline rather than phi-accrual. Phi-accrual fits a distribution to arrival
intervals and suspects when the silence becomes improbable; on a quiet link the fitted variance
is tiny and phi turns into a hair trigger unless floored, and its threshold is hard to relate to
the timing targets operators are promised. The deadline here says plainly how long a region may
be silent:

    deadline = clamp(mean interval + K x standard deviation, suspect_after, fail_after)

where mean and deviation come from the last ``history`` intervals. With reports every 0.5 s the
floor ``suspect_after`` (1.5 s: three reports in a row lost) governs, so detection takes at most
1.5 s plus one evaluation tick after the last report; an agent whose reports arrive irregularly
earns a longer deadline, up to ``fail_after``. A single late report therefore never marks a
region unhealthy, and a region that comes back must send ``recover_reports`` reports on time
before it is healthy again (hysteresis), so a flapping link does not flap the routing table.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


class RegionState(enum.Enum):
    PENDING = "PENDING"
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"
    MAINTENANCE = "MAINTENANCE"
    FAILOVER = "FAILOVER"


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    suspect_after: float = 1.5
    fail_after: float = 3.0
    deviations: float = 4.0
    history: int = 20
    recover_reports: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.suspect_after <= self.fail_after:
            raise ValueError("need 0 < suspect_after <= fail_after")
        if self.recover_reports < 1 or self.history < 2:
            raise ValueError("recover_reports >= 1 and history >= 2")


class ArrivalDetector:
    """When the reports of one agent are overdue."""

    def __init__(self, settings: DetectorSettings) -> None:
        self._settings = settings
        self._intervals: deque[float] = deque(maxlen=settings.history)
        self.last_arrival: float | None = None
        # Recomputed on arrival only: the leader evaluates every region ten times a second.
        self._deadline = settings.suspect_after

    def arrived(self, now: float) -> None:
        if self.last_arrival is not None:
            self._intervals.append(max(0.0, now - self.last_arrival))
            self._deadline = self._compute_deadline()
        self.last_arrival = now

    def reset(self) -> None:
        """Forget the history: a new agent process is a new arrival pattern."""
        self._intervals.clear()
        self.last_arrival = None
        self._deadline = self._settings.suspect_after

    def deadline(self) -> float:
        return self._deadline

    def _compute_deadline(self) -> float:
        s = self._settings
        if len(self._intervals) < 2:
            return s.suspect_after
        mean = sum(self._intervals) / len(self._intervals)
        variance = sum((x - mean) ** 2 for x in self._intervals) / (len(self._intervals) - 1)
        adaptive = mean + s.deviations * math.sqrt(variance)
        return min(max(adaptive, s.suspect_after), s.fail_after)

    def silence(self, now: float) -> float:
        return math.inf if self.last_arrival is None else max(0.0, now - self.last_arrival)

    def overdue(self, now: float) -> bool:
        return self.silence(now) > self.deadline()

    def failed(self, now: float) -> bool:
        """Silent past ``fail_after``: long enough to act on (with a second signal)."""
        return self.silence(now) >= self._settings.fail_after


@dataclass(frozen=True, slots=True)
class Assessment:
    state: RegionState
    reason: str
    since: float  # when the region entered this state


class RegionMonitor:
    """One region's health: its agent's liveness plus what its reports say.

    ``problems`` in a report (a failing check, the database down, lag over budget) make the
    region DEGRADED; silence makes it UNHEALTHY. Leaving UNHEALTHY or DEGRADED takes
    ``recover_reports`` consecutive reports without problems.
    """

    def __init__(self, settings: DetectorSettings, now: float) -> None:
        self._settings = settings
        self.arrivals = ArrivalDetector(settings)
        self.maintenance = False
        self.maintenance_reason = ""  # the operator's, shown as the state's reason
        self.in_failover = False
        # Evidence that the region's database lives although its agent may be silent (a
        # standby that reports now streams WAL from it), for the reason; "" when there is none.
        self.database_alive = ""
        self._problems: tuple[str, ...] = ()
        self._good_streak = 0
        self._current = Assessment(RegionState.PENDING, "no report yet", now)

    @property
    def current(self) -> Assessment:
        return self._current

    def report(self, now: float, problems: Sequence[str]) -> Assessment:
        # A report after the deadline is a recovery: the outage is not an arrival interval
        # (it would stretch the deadline), and the streak of good reports starts afresh.
        if self.arrivals.overdue(now):
            self.arrivals.reset()
            self._good_streak = 0
        self.arrivals.arrived(now)
        self._problems = tuple(problems)
        self._good_streak = 0 if problems else self._good_streak + 1
        return self.evaluate(now)

    def evaluate(self, now: float) -> Assessment:
        state, reason = self._decide(now)
        if state != self._current.state or reason != self._current.reason:
            since = self._current.since if state == self._current.state else now
            self._current = Assessment(state, reason, since)
        return self._current

    def _decide(self, now: float) -> tuple[RegionState, str]:
        if self.maintenance:
            why = self.maintenance_reason
            return RegionState.MAINTENANCE, f"in maintenance: {why}" if why else "in maintenance"
        if self.in_failover:
            return RegionState.FAILOVER, "failover in progress"
        if self.arrivals.last_arrival is None:
            return RegionState.PENDING, "no report yet"
        if self.arrivals.overdue(now):
            # Not the running silence: a reason that changed every tick would be republished
            # every tick.
            silent = f"no report for over {self.arrivals.deadline():.1f} s"
            if self.database_alive:
                # Its agent is lost, not its database: impaired, never failed (no failover).
                return RegionState.DEGRADED, f"{silent}, but {self.database_alive}"
            return RegionState.UNHEALTHY, silent
        previous = self._current.state
        recovering = previous in (RegionState.UNHEALTHY, RegionState.DEGRADED)
        if self._problems:
            return RegionState.DEGRADED, "; ".join(self._problems)
        if recovering and self._good_streak < self._settings.recover_reports:
            return previous, (
                f"recovering ({self._good_streak}/{self._settings.recover_reports} good reports)"
            )
        return RegionState.HEALTHY, "reporting on time"

    def failed(self, now: float) -> bool:
        return self.arrivals.failed(now)

    def resume(self, now: float, state: RegionState, reason: str) -> None:
        """Carry over the state a previous leader published, as if a report arrived now.

        A new leader does not know when the region last reported, so it grants one full
        deadline from its election: an agent that reconnects in time keeps its state, a dead
        one turns UNHEALTHY a deadline later instead of flapping through PENDING.
        """
        if state in (RegionState.HEALTHY, RegionState.DEGRADED):
            self.arrivals.reset()
            self.arrivals.arrived(now)
            self._current = Assessment(state, reason, now)
