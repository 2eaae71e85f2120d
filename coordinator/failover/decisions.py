"""Every failover decision, as a pure function of what the leader knows and the time it is.

- ``assess_primary``: has the primary's region failed, and is that confirmed by a second signal?
  Evidence, never absence: silence counts from the later of the last report and the start of
  this leadership (a new leader has heard nothing yet, which is no evidence of anything); a
  database counts as down only after it has been reported down for ``fail_after``; and "no
  standby streams from it" needs standbys that report *now* and say that their WAL receiver is
  not streaming from it. Silence while standbys still stream from it is an agent failure
  (an alert), never a promotion.
- ``check_target``: may a switchover or operator failover go to this region? Asked before
  anything is fenced, so a refusal leaves the primary as it was.
- ``choose``: the standby with the most WAL (priority breaks ties), refusing one past the lag
  budget unless forced, with the data-loss bound that choice implies.
- ``fence_deadline``: when the old primary has certainly stopped taking writes, if it was not
  fenced by command: the later of its last acknowledged report and the last failsafe
  confirmation a candidate gave it, plus ``fence_after`` and a margin.
- ``seconds_at_risk``: the data-loss bound in time, for the failover record.
- ``synchronous_names``: what ``synchronous_standby_names`` the primary should have.
- ``RetryPolicy``: repeated attempts at a failover back off, and are recorded once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from latitude.lsn import format_lsn
from latitude.table import human_bytes

__all__ = [
    "Assessment",
    "Budget",
    "Choice",
    "PrimaryView",
    "RetryPolicy",
    "StandbyView",
    "any_one",
    "assess_primary",
    "check_target",
    "choose",
    "fence_deadline",
    "format_lsn",
    "seconds_at_risk",
    "synchronous_names",
]


@dataclass(frozen=True, slots=True)
class PrimaryView:
    region: str
    silent_for: float  # seconds since its last report, or since this leadership began if later
    down_for: float  # seconds its agent has reported the database DOWN without a break (0: not)
    address: str  # host:port of its PostgreSQL, as standbys' WAL receivers see it


@dataclass(frozen=True, slots=True)
class StandbyView:
    region: str
    replayed_lsn: int
    streaming_from: str  # upstream host:port while its WAL receiver streams, else ""
    heartbeat_ns: int  # newest heartbeat replayed (0 if none)
    priority: int
    eligible: bool  # reporting, database up as a standby, not in maintenance, priority > 0
    why_not: str = ""
    reporting: bool = True  # its agent reports now (its view is evidence)


@dataclass(frozen=True, slots=True)
class Assessment:
    failed: bool
    confirmed: bool
    reason: str


def assess_primary(
    primary: PrimaryView, standbys: list[StandbyView], *, fail_after: float
) -> Assessment:
    if primary.silent_for >= fail_after:
        cause = f"no report for {primary.silent_for:.1f} s"
    elif primary.down_for >= fail_after:
        cause = f"its agent has reported the database down for {primary.down_for:.1f} s"
    else:
        return Assessment(False, False, "reporting")
    reporting = [s for s in standbys if s.reporting]
    streaming = [s.region for s in reporting if s.streaming_from == primary.address]
    if streaming:
        return Assessment(
            True,
            False,
            f"{primary.region}: {cause}, but {', '.join(streaming)} still stream WAL from it: "
            "the database is alive, only its agent is lost",
        )
    if not reporting:
        return Assessment(
            True,
            False,
            f"{primary.region}: {cause}, and no standby reports now to say whether the "
            "database is alive: waiting for evidence",
        )
    names = ", ".join(s.region for s in reporting)
    return Assessment(
        True, True, f"{primary.region} failed: {cause}; {names} report no WAL streaming from it"
    )


@dataclass(frozen=True, slots=True)
class Budget:
    max_bytes: int
    max_seconds: float


@dataclass(frozen=True, slots=True)
class Choice:
    region: str | None
    reason: str
    loss_bytes: int = 0
    loss_seconds: float = 0.0


def choose(
    standbys: list[StandbyView],
    *,
    primary_lsn: int,
    primary_heartbeat_ns: int,
    budget: Budget,
    forced: bool = False,
    target: str = "",
) -> Choice:
    """The standby to promote (``target`` if an operator named one)."""
    eligible = [s for s in standbys if s.eligible]
    if target:
        eligible = [s for s in eligible if s.region == target]
        if not eligible:
            why = next((s.why_not for s in standbys if s.region == target), "unknown region")
            return Choice(None, f"{target} cannot be promoted: {why}")
    if not eligible:
        reasons = "; ".join(f"{s.region}: {s.why_not}" for s in standbys) or "no standbys"
        return Choice(None, f"no standby can be promoted ({reasons})")
    best = max(eligible, key=lambda s: (s.replayed_lsn, s.priority, s.region))
    loss_bytes = max(0, primary_lsn - best.replayed_lsn)
    loss_seconds = 0.0
    if loss_bytes and primary_heartbeat_ns and best.heartbeat_ns:
        loss_seconds = max(0.0, (primary_heartbeat_ns - best.heartbeat_ns) / 1e9)
    if target:
        reason = f"chosen by the operator ({format_lsn(best.replayed_lsn)} replayed)"
    else:
        reason = f"most WAL replayed ({format_lsn(best.replayed_lsn)}), priority {best.priority}"
    over = loss_bytes > budget.max_bytes or loss_seconds > budget.max_seconds
    if over and not forced:
        return Choice(
            None,
            f"{best.region} is {human_bytes(loss_bytes)} / {loss_seconds:.1f} s behind, past the "
            f"lag budget ({human_bytes(budget.max_bytes)} / {budget.max_seconds:.0f} s): "
            "promote with force to accept the loss",
            loss_bytes,
            loss_seconds,
        )
    suffix = " (forced past the lag budget)" if over else ""
    return Choice(best.region, reason + suffix, loss_bytes, loss_seconds)


def check_target(
    standbys: list[StandbyView],
    *,
    target: str,
    primary_lsn: int,
    primary_heartbeat_ns: int,
    budget: Budget,
    forced: bool,
    switchover: bool,
) -> Choice:
    """Before anything is fenced: the region a switchover or an operator's failover would
    promote, or why none can be. A switchover's target must also stream from the primary now
    (it is to catch up with the fenced primary's last word, and only the stream brings it); its
    lag is no loss (it waits to catch up), but past the budget it needs force, as it would keep
    writes waiting that long."""
    if switchover:
        standbys = [
            s
            if s.streaming_from or not s.eligible
            else replace(s, eligible=False, why_not="it does not stream WAL now")
            for s in standbys
        ]
    return choose(
        standbys,
        primary_lsn=primary_lsn,
        primary_heartbeat_ns=primary_heartbeat_ns,
        budget=budget,
        forced=forced,
        target=target,
    )


def fence_deadline(
    *,
    last_ack: float | None,
    leadership_began: float,
    confirmations: Iterable[float],
    fence_after: float,
    margin: float,
) -> float:
    """When an unreachable old primary has certainly stopped taking writes (same clock as the
    arguments). Its agent fences at fence_after after the later of the newest report a leader
    acknowledged and the newest failsafe round every other region confirmed; a round can be
    confirmed no later than any one region's last confirmation. A leader that acknowledged
    nothing of it knows only that its predecessors' acknowledgements came before its term."""
    acked = last_ack if last_ack is not None else leadership_began
    newest = max([acked, *confirmations])
    return newest + fence_after + margin


def seconds_at_risk(
    *, kept_until_ns: int, writes_ended_ns: int, loss_bytes: int | None
) -> float | None:
    """How long before the old primary's writes certainly ended a lost commit can have been
    acknowledged: the data-loss bound in time.

    ``kept_until_ns`` is the newest heartbeat the promoted standby has replayed. The primary
    stamps a heartbeat with now(), the start of its transaction, so every commit acknowledged
    before that moment precedes the heartbeat's commit in the WAL; WAL is replayed in order,
    so the standby holds all of them. ``writes_ended_ns`` is when the old primary certainly
    acknowledged nothing more: when a FENCE command was confirmed, or else its fence deadline.
    Lost commits were acknowledged between the two moments, and the bound is the time between
    them. It cannot honestly be shorter: a primary that went silent may be cut off rather than
    dead, and it takes writes until it fences itself, so its last commit may come as late as
    its fence deadline.

    0 when ``loss_bytes`` is 0 (the final position is known and the standby has it all);
    None when the standby has replayed no heartbeat (nothing can be said). The heartbeat is on
    the primary's clock and the end on the coordinator's: the bound assumes them synchronised.
    """
    if loss_bytes == 0:
        return 0.0
    if not kept_until_ns:
        return None
    return max(0.0, (writes_ended_ns - kept_until_ns) / 1e9)


def same_reason(reason: str) -> str:
    """A reason with its figures blanked: "no report for 3.1 s" and "... 3.2 s" are one."""
    return _FIGURES.sub("#", reason)


_FIGURES = re.compile(r"\d+(?:\.\d+)?")


def any_one(regions: Iterable[str]) -> str:
    """synchronous_standby_names: a commit waits for any one of these standbys."""
    return "ANY 1 (" + ",".join(f'"{name}"' for name in sorted(regions)) + ")"


def synchronous_names(
    streaming: Iterable[str], *, none_since: float, now: float, fail_after: float, fallback: bool
) -> str | None:
    """What synchronous_standby_names the primary should have: ANY 1 of the standbys streaming
    from it; with none for ``fail_after`` (since ``none_since``), asynchronous if ``fallback``
    is allowed; None while it should keep waiting on whatever is set (right after a promotion
    the standbys are still being repointed, and commits wait for them rather than go
    unprotected)."""
    names = sorted(streaming)
    if names:
        return any_one(names)
    if fallback and now - none_since >= fail_after:
        return ""
    return None


@dataclass
class RetryPolicy:
    """A failover that could not start, or aborted, is tried again later, not ten times a
    second: the wait doubles from ``first`` up to ``cap``, and resets once the primary is
    healthy again. ``should_record`` is True once per distinct reason, so the history shows
    each cause once rather than a storm."""

    first: float = 1.0
    cap: float = 30.0
    _next_at: float = -math.inf
    _wait: float = 0.0
    _recorded: frozenset[str] = frozenset()

    def ready(self, now: float) -> bool:
        return now >= self._next_at

    def failed(self, now: float) -> float:
        """An attempt failed at ``now``: the wait before the next one."""
        self._wait = self.first if self._wait == 0 else min(self._wait * 2, self.cap)
        self._next_at = now + self._wait
        return self._wait

    def should_record(self, reason: str) -> bool:
        """True the first time a reason is seen (figures in it, which move, do not count)."""
        key = same_reason(reason)
        if key in self._recorded:
            return False
        self._recorded = self._recorded | {key}
        return True

    def reset(self) -> None:
        self._next_at, self._wait, self._recorded = -math.inf, 0.0, frozenset()
