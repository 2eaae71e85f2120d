"""The failover, in one place.

- ``decisions``: every decision as a pure function (has the primary failed, and is it
  confirmed; may this target be promoted; which standby; the fence deadline, failsafe
  confirmations included; the data-loss bound; synchronous replication; retries), unit-tested
  with a fake clock;
- ``views``: the leader's registry as those decisions see it;
- ``machine``: the state machine that carries a failover or switchover out, phase by phase,
  its record in etcd so a new leader resumes it;
- ``guards``: what the leader keeps true between failovers (one writable primary, unfenced);
- ``rejoin``: bringing a former primary (or a standby gone astray) back as a standby.

They use the leader only through ``coordinator.leader.Leader``.
"""
