"""How far a standby is behind the primary, from the two agents' reports.

The two reports are taken at different moments, so comparing a standby's replay position with
the primary's *latest* report overstates the lag by whatever the primary wrote since the
standby looked (its own heartbeat, at least). Instead the standby is compared with the
primary as it was when the standby observed itself: the newest primary sample taken no later
than the standby's ``observed_at``. Each agent's clock may be off: the registry estimates every
agent's offset from the leader's clock (the smallest gap between a report's ``sent_at`` and its
arrival over the last reports) and both observations are compared on the leader's clock.

Bytes: that sample's current LSN minus the standby's replayed LSN. Seconds: 0 when no byte is
missing (exact, idle or not); otherwise the primary's heartbeat in that sample minus the
newest heartbeat the standby has replayed, to the resolution of the heartbeat interval.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from latitude.v1 import common_pb2


@dataclass(frozen=True, slots=True)
class PrimarySample:
    observed_ns: int
    current_lsn: int
    heartbeat_ns: int  # 0 when the primary has no heartbeat yet


class PrimaryHistory:
    def __init__(self, keep: int = 32) -> None:
        self._samples: deque[PrimarySample] = deque(maxlen=keep)

    def clear(self) -> None:
        self._samples.clear()

    def record(self, db: common_pb2.DatabaseStatus, offset_ns: int = 0) -> None:
        """``offset_ns``: what to add to the agent's clock to read the leader's."""
        sample = PrimarySample(
            db.observed_at.ToNanoseconds() + offset_ns,
            db.current_lsn,
            db.heartbeat_at.ToNanoseconds() if db.HasField("heartbeat_at") else 0,
        )
        if self._samples and sample.observed_ns < self._samples[-1].observed_ns:
            self._samples.clear()  # a clock step or a new primary: start over
        self._samples.append(sample)

    def as_of(self, observed_ns: int) -> PrimarySample | None:
        if not self._samples:
            return None
        index = bisect.bisect_right([s.observed_ns for s in self._samples], observed_ns)
        return self._samples[max(index - 1, 0)]

    def lag(self, standby: common_pb2.DatabaseStatus, offset_ns: int = 0) -> tuple[int, float]:
        """(bytes, seconds) the standby is behind; (0, its own estimate) without a primary."""
        sample = self.as_of(standby.observed_at.ToNanoseconds() + offset_ns)
        if sample is None:
            return 0, standby.replay_lag_seconds
        missing = max(0, sample.current_lsn - standby.replayed_lsn)
        if missing == 0:
            return 0, 0.0
        if sample.heartbeat_ns and standby.HasField("heartbeat_at"):
            behind = sample.heartbeat_ns - standby.heartbeat_at.ToNanoseconds()
            return missing, max(0.0, behind / 1e9)
        return missing, standby.replay_lag_seconds
