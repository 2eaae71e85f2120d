"""What each HTTP health endpoint answers, from a snapshot of what the agent knows.

Load balancers (HAProxy's ``option httpchk``) and Kubernetes probes cannot speak gRPC: they
ask a path and go by the status, 200 for yes and 503 for no. The answers come from the agent's
newest probe of its database, the newest leader's word (agent.failsafe.Word), its fence lease
(agent.lease) and what it is about to do (Marks); never from a query made for the request, so
an answer costs nothing and a hung database cannot hang a check.

``/primary`` is the one that must never be wrong in the unsafe direction. It says yes only for
an unfenced primary that the newest leader names as the write region, seen recently, with no
failover moving the primary away, no fence on its way, and a fence lease that still has a
margin to run. The margin makes the answer turn to 503 before the agent would fence itself, so
a load balancer drains first; and since the leader promotes another region only after this
one's lease deadline, two agents never say yes at once. A FENCE (switchover, maintenance
drain, failover) is marked before it is carried out, so the answer turns before the database
is demoted.

A region an operator put in maintenance (the leader's word says so, ``Word.maintenance``) is no
longer offered for reads: ``/replica`` and ``/read-only`` answer 503, as routing already sends
gRPC clients elsewhere, so a load balancer's read listener drops it too (Patroni does the same
for a member tagged ``noloadbalance``). ``/primary`` needs no rule of its own: the leader puts
the write region in maintenance only after draining it (a switchover, whose FENCE marks the
drain before the database is demoted), so by then this region is not the write region. The
process is no less healthy for it: ``/health``, ``/liveness`` and ``/readiness`` ignore the flag.

Pure: the snapshot carries its own clock readings; unit tests drive it with a fake clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.failsafe import Word
from agent.health_lag import LagBound
from latitude.enums import short_name
from latitude.lsn import format_lsn
from latitude.v1 import agent_pb2, common_pb2

_ROLE = common_pb2.DatabaseRole
_PRIMARY = common_pb2.DATABASE_ROLE_PRIMARY
_STANDBY = common_pb2.DATABASE_ROLE_STANDBY
_K = agent_pb2.CommandKind
OK, NO = 200, 503
# Commands after which the database is no longer the primary a FENCE was draining (or is
# one again, unfenced): the mark has done its work.
_DRAIN_OVER = (_K.COMMAND_KIND_UNFENCE, _K.COMMAND_KIND_PROMOTE, _K.COMMAND_KIND_REJOIN)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == OK


class Marks:
    """What the agent is doing that its next probe cannot show yet, and when its loops last
    went round (monotonic)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Why /primary drains ahead of a fence under way; "" when none is.
        self.draining = ""
        # This region was promoted by the failover still under way: the leader's word keeps
        # saying "failover in progress" while it repoints the others, and that is not a
        # failover away from this region. Should a failover away from it follow so closely
        # that no word in between said "none under way", its FENCE (or the lease) drains it.
        self.promoted = False
        self.ticks: dict[str, float] = {}

    def tick(self, loop: str) -> None:
        self.ticks[loop] = self._clock()

    def fence_coming(self, why: str) -> None:
        """Called before a fence starts (mark first, then act)."""
        self.draining = why

    def command_done(self, kind: int, ok: bool) -> None:
        if kind == _K.COMMAND_KIND_FENCE and not ok:
            # Not fenced after all: the lease and the word still say when to drain.
            self.draining = ""
        elif kind in _DRAIN_OVER and ok:
            self.draining = ""
            if kind == _K.COMMAND_KIND_PROMOTE:
                self.promoted = True

    def word_seen(self, word: Word) -> None:
        if not word.failover_in_progress:
            self.promoted = False


def drain_margin(*, fence_after: float, ack_period: float, interval: float) -> float:
    """How long before the fence lease runs out /primary turns 503.

    Long enough for a load balancer to notice (half the lease: 2 s of the default 4 s, two
    checks at HAProxy's default interval), but never so long that a healthy primary whose
    acknowledgements come every ``ack_period`` (the leader acknowledges every ack_every-th
    report) dips under it: two periods must pass without one before it drains. At least one
    report interval all the same, so that the drain still comes before the fence."""
    return max(interval, min(fence_after / 2, fence_after - 2 * ack_period))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything an answer rests on, read at one moment (``now``, monotonic)."""

    region: str
    database: common_pb2.DatabaseStatus
    observed_age: float  # seconds since the probe behind ``database`` started
    fresh_for: float  # an observation older than this is not believed
    word: Word | None  # the newest leader's word; None before any leader spoke
    lease_remaining: float  # seconds until this agent would fence a writable database
    lease_margin: float  # /primary turns 503 this long before the lease runs out
    draining: str = ""
    promoted: bool = False
    loop_ages: dict[str, float] = field(default_factory=dict)
    stall_after: float = 10.0  # a loop that has not gone round for this long is stuck


def _seen(s: Snapshot) -> str:
    """Why the observation cannot be believed as one of a running database; "" if it can."""
    if s.observed_age == math.inf:
        return "the database has not been observed yet"
    if s.observed_age > s.fresh_for:
        return f"the newest observation of the database is {s.observed_age:.1f} s old"
    if s.database.role not in (_PRIMARY, _STANDBY):
        role = short_name(_ROLE, s.database.role)
        problem = f": {s.database.probe_error}" if s.database.probe_error else ""
        return f"the database is {role}{problem}"
    return ""


def primary(s: Snapshot) -> Answer:
    """200 only for the writable, unfenced primary of the write region the leader names."""
    why = _seen(s)
    if why:
        return Answer(NO, why)
    db, word = s.database, s.word
    if db.role != _PRIMARY:
        return Answer(NO, "the database is a standby")
    if db.fenced:
        cause = short_name(common_pb2.FenceCause, db.fence_cause, lower=True)
        return Answer(NO, f"the database is fenced ({cause})")
    if s.draining:
        return Answer(NO, f"draining: {s.draining}")
    if word is None:
        return Answer(NO, "no word from a leader yet: the write region is not known")
    if word.write_region != s.region:
        named = word.write_region or "no region"
        return Answer(NO, f"the leader (epoch {word.epoch}) names {named} as the write region")
    if word.failover_in_progress and not s.promoted:
        return Answer(NO, f"the leader (epoch {word.epoch}) says a failover is under way")
    if s.lease_remaining < s.lease_margin:
        return Answer(
            NO,
            f"the fence lease runs out in {s.lease_remaining:.1f} s "
            f"(draining {s.lease_margin:.1f} s before it)",
        )
    return Answer(OK, f"the writable primary of the write region (epoch {word.epoch})")


def replica(s: Snapshot, lag: LagBound | None = None) -> Answer:
    """200 for a streaming, unfenced standby not in maintenance, within ``lag`` when one is
    given."""
    why = _seen(s)
    if why:
        return Answer(NO, why)
    db = s.database
    if db.role != _STANDBY:
        return Answer(NO, "the database is a primary, not a standby")
    if s.word is not None and s.word.maintenance:
        # The newest word stands however old it is, as for every other rule here: the flag
        # lives in etcd and only a leader clears it, so no leader means it is still set; and
        # a word without it keeps a streaming standby serving reads through an outage of the
        # control plane, as clients keep the last good routing table.
        return Answer(NO, f"region in maintenance (the leader, epoch {s.word.epoch})")
    if db.fenced:
        return Answer(NO, "the standby is fenced")
    if not db.wal_receiver_streaming:
        return Answer(NO, "the standby is not streaming")
    if lag is not None:
        past = lag.exceeded_by(db.replay_lag_bytes, db.replay_lag_seconds)
        if past:
            return Answer(NO, past)
    upstream = db.upstream_region or db.upstream_address
    return Answer(OK, f"a streaming standby of {upstream}")


def read_only(s: Snapshot, lag: LagBound | None = None) -> Answer:
    """200 where reads see the cluster's current data: the primary, or a replica in bounds."""
    as_primary = primary(s)
    if as_primary.ok:
        return as_primary
    as_replica = replica(s, lag)
    if as_replica.ok:
        return as_replica
    why = f"not the primary ({as_primary.reason}), nor a replica ({as_replica.reason})"
    return Answer(NO, why)


def health(s: Snapshot) -> Answer:
    """200 while the database runs (primary or standby, fenced or not)."""
    why = _seen(s)
    if why:
        return Answer(NO, why)
    return Answer(OK, f"the database runs as a {short_name(_ROLE, s.database.role, lower=True)}")


def liveness(s: Snapshot) -> Answer:
    """200 while every loop of the agent keeps going round; a restart is the cure otherwise."""
    stuck = sorted(
        f"{loop} ({age:.1f} s)" for loop, age in s.loop_ages.items() if age > s.stall_after
    )
    if stuck:
        return Answer(NO, f"stuck for over {s.stall_after:.1f} s: {', '.join(stuck)}")
    return Answer(OK, "the agent's loops are going round")


def readiness(s: Snapshot) -> Answer:
    """200 once the agent is alive, has heard a leader since it started, and sees its
    database run. The leader need not be reachable now: an etcd outage must not take every
    region out of its Service.

    Maintenance does not make it unready, as a ``noloadbalance`` tag leaves Patroni's
    /readiness alone: readiness gates every Service the pod backs, a headless one carrying
    replication or the agents' failsafe confirmations included, and a StatefulSet's
    rolling update waits for pods to be ready, in the very window maintenance is for. Whether
    reads go to the region is a routing question, and /replica answers it."""
    alive = liveness(s)
    if not alive.ok:
        return alive
    if s.word is None:
        return Answer(NO, "no word from a leader since the agent started")
    running = health(s)
    if not running.ok:
        return running
    return Answer(OK, "the agent knows the cluster and its database runs")


def _lsn(value: int) -> str | None:
    return format_lsn(value) if value else None


def body(s: Snapshot, answer: Answer) -> dict:
    """The JSON every answer carries: the status's reason beside what it rests on."""
    db, word = s.database, s.word
    standby = db.role == _STANDBY
    return {
        "region": s.region,
        "status": answer.status,
        "reason": answer.reason,
        "role": short_name(_ROLE, db.role, lower=True),
        "timeline": db.timeline_id or None,
        "lsn": {
            "current": _lsn(db.current_lsn),
            "received": _lsn(db.received_lsn),
            "replayed": _lsn(db.replayed_lsn),
        },
        "lag": {"bytes": db.replay_lag_bytes, "seconds": round(db.replay_lag_seconds, 3)}
        if standby
        else None,
        "streaming": db.wal_receiver_streaming if standby else None,
        "upstream": (db.upstream_region or db.upstream_address or None) if standby else None,
        "fenced": db.fenced,
        "fence_cause": short_name(common_pb2.FenceCause, db.fence_cause, lower=True)
        if db.fenced
        else None,
        "draining": s.draining or None,
        "maintenance": word.maintenance if word else None,
        "write_region": (word.write_region or None) if word else None,
        "failover_in_progress": word.failover_in_progress if word else None,
        "leader_epoch": word.epoch if word else None,
        "lease_remaining_seconds": round(s.lease_remaining, 3),
        "observed_seconds_ago": round(s.observed_age, 3) if s.observed_age < math.inf else None,
    }
