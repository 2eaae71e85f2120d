"""``latitude-keeper``: fences the region's primary when its agent cannot.

The leader promotes another region once the old primary's fence deadline has passed, trusting
that the old primary's agent fenced it by then. An agent that is dead, hung (SIGSTOP) or
stuck cannot; so beside each region's agent runs this tiny process, which outlives it. Every
``interval`` it reads the agent's fence lease (a file the agent rewrites whenever its deadline
moves); once the deadline has passed and a postmaster that could be a primary runs on the
data directory, it fences it on files and signals (agent.demotion): marked fenced, then
stopped. Whoever starts it again gets a standby.

A live agent that sees its database fences it itself at the same deadline, and the leader may
then lift that fence without a restart. So the lease also carries when the agent last vouched
for the database (its probe saw a primary or a standby, and did not leave it writable past the
deadline): while that is under ``agent_grace`` old the keeper leaves the fence to the agent.
A dead, frozen or blind agent stops vouching, and the keeper fences at the deadline; a live
one that has not begun its own fence by ``DEFER_AT_MOST`` past the deadline is overtaken all
the same, so the database stops taking writes before the leader's margin runs out.

It must be small and hard to break: the standard library only (no grpc, no asyncpg, no event
loop), no network, and nothing it reads can make it fail. It writes a heartbeat beside the
lease so that the agent can report a keeper that is gone (check ``fence-keeper``).

This module also owns the two files' format, which the agent writes (the lease) and reads
(the heartbeat). Deadlines and beats are on CLOCK_MONOTONIC: ``time.monotonic()`` is one
clock for every process on a Linux host, and unlike the wall clock it does not step. A boot
id in each file keeps a value from before a reboot (another monotonic epoch) from counting.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agent.demotion import could_be_writable, mark_fenced, postmaster_pid, stop_postmaster

log = logging.getLogger("latitude.keeper")

BEAT_EVERY = 0.5  # seconds between heartbeats
STALE_AFTER = 2.0  # a heartbeat older than this: the keeper is gone or hung
STOP_GRACE = 2.0  # a fast shutdown, then an immediate one
AGENT_GRACE = 1.0  # a vouch this fresh: the agent is alive, sees its database, fences it
# But never past the deadline by more than this: the leader promotes another region at the
# deadline plus its margin (0.5 s), and a live agent starts its fence within 50 ms of it.
DEFER_AT_MOST = 0.25


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


BOOT_ID = _boot_id()


# -- the files ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseFile:
    """An agent's fence lease: ``region``'s database may stay writable until ``deadline``
    (time.monotonic()), as agent process ``pid`` saw it; the agent last vouched for the
    database at ``vouched_at`` (None: never)."""

    region: str
    deadline: float
    pid: int
    vouched_at: float | None = None


def write_lease(path: Path, lease: LeaseFile) -> None:
    _replace(path, {"region": lease.region, "deadline": lease.deadline, "pid": lease.pid,
                    "vouched_at": lease.vouched_at, "boot": BOOT_ID})  # fmt: skip


def read_lease(path: Path, region: str) -> LeaseFile | None:
    """The lease in ``path``, if it is a valid one for ``region`` written since boot."""
    raw = _read(path)
    try:
        vouched = raw.get("vouched_at")
        lease = LeaseFile(str(raw["region"]), float(raw["deadline"]), int(raw["pid"]),
                          None if vouched is None else float(vouched))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None
    return lease if lease.region == region and raw.get("boot") == BOOT_ID else None


def heartbeat_path(lease: Path) -> Path:
    """The keeper's heartbeat, beside the lease it watches."""
    return lease.with_name(lease.name + ".keeper")


def write_heartbeat(path: Path, *, region: str, at: float, fenced: str = "") -> None:
    _replace(path, {"region": region, "at": at, "pid": os.getpid(), "boot": BOOT_ID,
                    "fenced": fenced})  # fmt: skip


def keeper_problem(lease: Path, region: str, now: float) -> str:
    """Why the keeper of ``region`` watching ``lease`` is not known alive; "" when it is."""
    raw = _read(heartbeat_path(lease))
    try:
        at = float(raw["at"])
    except (KeyError, TypeError, ValueError):
        return f"no heartbeat from the fence keeper in {heartbeat_path(lease)}"
    if raw.get("region") != region or raw.get("boot") != BOOT_ID:
        return f"{heartbeat_path(lease)} is not this region's keeper's since boot"
    if now - at > STALE_AFTER:
        return f"the fence keeper's last heartbeat is {now - at:.1f} s old (gone or hung?)"
    return ""


def _read(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _replace(path: Path, content: dict) -> None:
    # Written beside, then renamed: a reader sees the old file or the new one, never half.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)


# -- the decision ------------------------------------------------------------------------


class Watch:
    """The deadline the keeper holds the database to. Until a valid lease for its region has
    been read it counts ``fence_after`` from its own start: a primary whose agent never came
    up must not take writes for long either. A lease that later becomes unreadable leaves the
    last valid one in force.

    A postmaster that starts after that (``latitude up`` bringing a region back, before its
    agent runs again; an agent's REJOIN) gets ``fence_after`` from when the keeper first saw it,
    the same as a keeper's start: whoever starts an old primary starts it fenced (a returning
    primary is never writable on its own), and its agent has that long to take over."""

    def __init__(
        self, *, started_at: float, fence_after: float, agent_grace: float = AGENT_GRACE
    ) -> None:
        self.fence_after = fence_after
        self.agent_grace = agent_grace
        self.lease_deadline = started_at + fence_after
        self.vouched_at: float | None = None
        self.from_lease = False
        self._postmaster: int | None = None
        self._postmaster_since = started_at

    def see(self, lease: LeaseFile | None, postmaster: int | None, now: float) -> None:
        """The lease as read now (None: none valid), and the postmaster's pid (None: none)."""
        if lease is not None:
            self.lease_deadline, self.vouched_at = lease.deadline, lease.vouched_at
            self.from_lease = True
        if postmaster is not None and postmaster != self._postmaster:
            self._postmaster, self._postmaster_since = postmaster, now

    @property
    def deadline(self) -> float:
        return max(self.lease_deadline, self._postmaster_since + self.fence_after)

    def agent_vouches(self, now: float) -> bool:
        return self.vouched_at is not None and now - self.vouched_at < self.agent_grace

    def due(self, now: float, *, writable: bool) -> bool:
        """Fence now: the deadline has passed, the database could take writes, and no live
        agent answers for it."""
        if not writable or now < self.deadline:
            return False
        return not self.agent_vouches(now) or now >= self.deadline + DEFER_AT_MOST


# -- the process -------------------------------------------------------------------------


class Keeper:
    def __init__(
        self, *, region: str, pg_data: Path, lease: Path, fence_after: float, now: float,
        agent_grace: float = AGENT_GRACE,
    ) -> None:  # fmt: skip
        self.region = region
        self.pg_data = pg_data
        self.lease = lease
        self.watch = Watch(started_at=now, fence_after=fence_after, agent_grace=agent_grace)
        self.fenced = ""  # when it last fenced, for the heartbeat's reader
        self._beat_at = -BEAT_EVERY

    def tick(self, now: float) -> bool:
        """One look; True when it fenced the database."""
        self.watch.see(read_lease(self.lease, self.region), postmaster_pid(self.pg_data), now)
        acted = False
        if self.watch.due(now, writable=could_be_writable(self.pg_data)):
            late = now - self.watch.deadline
            if self.watch.deadline > self.watch.lease_deadline:
                what = "the postmaster's start + fence_after"
            elif self.watch.from_lease:
                what = "the agent's lease"
            else:
                what = "the keeper's start + fence_after, no lease"
            vouched = self.watch.vouched_at
            agent = "never" if vouched is None else f"{now - vouched:.3f} s ago"
            log.warning(
                "fence deadline (%s) passed %.3f s ago, the agent last vouched %s, and %s may "
                "take writes: fencing it", what, late, agent, self.pg_data,
            )  # fmt: skip
            mark_fenced(self.pg_data, "keeper")
            how = stop_postmaster(self.pg_data, grace=STOP_GRACE)
            log.warning("fenced %s: marked, shutdown %s", self.pg_data, how)
            self.fenced = f"{time.time():.3f}"
            acted = True
        if acted or now - self._beat_at >= BEAT_EVERY:
            write_heartbeat(heartbeat_path(self.lease), region=self.region, at=time.monotonic(),
                            fenced=self.fenced)  # fmt: skip
            self._beat_at = now
        return acted


def run(keeper: Keeper, interval: float) -> None:
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("keeping %s's fence on %s (lease %s)", keeper.region, keeper.pg_data, keeper.lease)
    while not stopping:
        try:
            keeper.tick(time.monotonic())
        except OSError as err:
            # A full disk or a permission problem must not end the keeper: try again.
            log.error("fence keeper step failed: %s", err)
        time.sleep(interval)
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latitude-keeper", description=__doc__.split("\n")[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--pg-data", type=Path, required=True, help="the data directory")
    parser.add_argument("--lease", type=Path, required=True, help="the agent's --fence-lease")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between looks")
    parser.add_argument(
        "--fence-after", type=float, default=4.0,
        help="the deadline, from the keeper's start, while no lease has been written",
    )  # fmt: skip
    parser.add_argument(
        "--agent-grace", type=float, default=AGENT_GRACE,
        help="seconds a live agent's vouch for its database holds the keeper back",
    )  # fmt: skip
    parser.add_argument("--log-level", default=os.environ.get("LATITUDE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.interval > 0 or not args.fence_after > 0 or args.agent_grace < 0:
        parser.error("--interval and --fence-after must be positive, --agent-grace not negative")
    if not args.pg_data.is_dir():
        parser.error(f"--pg-data: {args.pg_data} is not a directory")
    if not args.lease.parent.is_dir():
        parser.error(f"--lease: {args.lease.parent} is not a directory")
    keeper = Keeper(region=args.region, pg_data=args.pg_data, lease=args.lease,
                    fence_after=args.fence_after, now=time.monotonic(),
                    agent_grace=args.agent_grace)  # fmt: skip
    run(keeper, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
