"""The correlation: events in (with their own times), incidents out."""

from __future__ import annotations

from coordinator.incidents.correlate import CorrelationSettings, Correlator, Ledger
from latitude.v1 import admin_pb2 as pb

OPEN, RESOLVED = pb.INCIDENT_STATE_OPEN, pb.INCIDENT_STATE_RESOLVED


class History:
    """Events as the leader records them: increasing sequences, times from a fake clock."""

    def __init__(self, correlator: Correlator | None = None) -> None:
        self.correlator = correlator or Correlator()
        self.sequence = 0
        self.now = 1_000.0

    def at(self, now: float) -> History:
        self.now = now
        return self

    def event(self, what, severity=pb.SEVERITY_INFO, region="", failover_id="", **attributes):
        self.sequence += 1
        event = pb.Event(
            sequence=self.sequence,
            kind=what,
            severity=severity,
            region=region,
            failover_id=failover_id,
            message=f"{pb.EventKind.Name(what).lower()} {region}".strip(),
        )
        event.time.FromNanoseconds(int(self.now * 1e9))
        event.attributes.update({k: str(v) for k, v in attributes.items()})
        return self.correlator.observe(event)

    def state(self, region, to, reason=""):
        severity = {"UNHEALTHY": pb.SEVERITY_CRITICAL, "DEGRADED": pb.SEVERITY_WARNING}
        return self.event(
            pb.EVENT_KIND_REGION_STATE_CHANGED,
            severity.get(to, pb.SEVERITY_INFO),
            region,
            to=to,
            reason=reason,
        )

    def failover(self, failover_id, source, target, kind="automatic"):
        severity = pb.SEVERITY_CRITICAL if kind == "automatic" else pb.SEVERITY_WARNING
        self.event(
            pb.EVENT_KIND_FAILOVER_STARTED, severity, source, failover_id, kind=kind, to=target
        )

    def incidents(self, state=None) -> list[pb.Incident]:
        found = sorted(self.correlator.incidents.values(), key=lambda i: i.opened_at.seconds)
        return [i for i in found if state is None or i.state == state]

    def only(self) -> pb.Incident:
        found = self.incidents()
        assert len(found) == 1, [(i.id, i.cause, list(i.regions)) for i in found]
        return found[0]


def primary_region_fails(h: History, failover_id="f1") -> None:
    """A killed primary region, as the leader records it, through a completed failover."""
    h.event(pb.EVENT_KIND_AGENT_DISCONNECTED, region="us-east-1")
    h.at(1003.0).state("us-east-1", "UNHEALTHY", "no report for over 3.0 s")
    h.at(1004.0).state("eu-west-1", "DEGRADED", "standby not streaming WAL")
    h.state("ap-southeast-1", "DEGRADED", "standby not streaming WAL")
    h.at(1004.5).failover(failover_id, "us-east-1", "")
    h.state("us-east-1", "FAILOVER", "failover in progress")
    h.at(1008.0).event(pb.EVENT_KIND_PROMOTED, pb.SEVERITY_WARNING, "eu-west-1", failover_id)
    h.at(1008.5).event(pb.EVENT_KIND_FAILOVER_COMPLETED, pb.SEVERITY_INFO, "us-east-1", failover_id)
    h.at(1009.0).state("us-east-1", "UNHEALTHY", "no report")
    h.state("eu-west-1", "HEALTHY")
    h.at(1010.0).state("ap-southeast-1", "HEALTHY")


def test_a_failed_primary_region_its_failover_and_its_standbys_are_one_incident():
    h = History()
    primary_region_fails(h)
    incident = h.only()
    assert incident.id == "inc-2"  # the sequence of the event that opened it
    assert incident.cause == "region_unhealthy"
    assert incident.severity == pb.SEVERITY_CRITICAL
    assert list(incident.regions) == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    assert list(incident.failover_ids) == ["f1"]
    # The agent's disconnection came before anything was wrong: not part of it.
    assert [e.sequence for e in incident.timeline] == list(range(2, 12))
    # The failed region is still down: the incident waits for it.
    assert incident.state == OPEN
    assert list(incident.awaiting) == ["us-east-1 healthy"]


def test_the_incident_resolves_when_the_old_primary_rejoins_healthy():
    h = History()
    primary_region_fails(h)
    h.at(1100.0).event(pb.EVENT_KIND_FENCED, pb.SEVERITY_CRITICAL, "us-east-1", cause="keeper")
    assert h.only().awaiting == ["us-east-1 healthy", "us-east-1 unfenced"]
    h.at(1102.0).event(pb.EVENT_KIND_REJOINED, region="us-east-1", rewound=True)
    assert h.only().state == OPEN
    revision = h.only().revision
    h.at(1104.0).state("us-east-1", "HEALTHY")
    incident = h.only()
    assert incident.state == RESOLVED
    assert incident.resolved_at.seconds == 1104
    assert incident.revision == revision + 1
    assert not incident.awaiting


def test_every_change_raises_the_revision_and_the_update_time():
    h = History()
    h.state("eu-west-1", "DEGRADED", "check api failing")
    first = h.only().revision
    h.at(1001.0).event(pb.EVENT_KIND_COMMAND_FAILED, pb.SEVERITY_WARNING, "eu-west-1")
    incident = h.only()
    assert incident.revision == first + 1
    assert incident.updated_at.seconds == 1001
    assert incident.opened_at.seconds == 1000


def test_a_region_flapping_within_the_window_reopens_the_same_incident():
    h = History(Correlator(CorrelationSettings(reopen_window=300)))
    h.state("eu-west-1", "UNHEALTHY")
    h.at(1010.0).state("eu-west-1", "HEALTHY")
    assert h.only().state == RESOLVED
    h.at(1100.0).state("eu-west-1", "UNHEALTHY")
    incident = h.only()
    assert incident.state == OPEN and incident.reopened == 1
    assert not incident.HasField("resolved_at")
    h.at(1110.0).state("eu-west-1", "HEALTHY")
    # Past the window it is a new incident.
    h.at(1500.0).state("eu-west-1", "UNHEALTHY")
    assert [i.state for i in h.incidents()] == [RESOLVED, OPEN]


def test_unrelated_regions_far_apart_in_time_are_separate_incidents():
    h = History(Correlator(CorrelationSettings(group_window=30)))
    h.state("eu-west-1", "DEGRADED", "check api failing")
    h.at(1100.0).state("ap-southeast-1", "UNHEALTHY")
    assert [(i.cause, list(i.regions)) for i in h.incidents()] == [
        ("region_degraded", ["eu-west-1"]),
        ("region_unhealthy", ["ap-southeast-1"]),
    ]


def test_a_more_severe_signal_takes_over_the_cause():
    h = History()
    h.event(pb.EVENT_KIND_ALERT, pb.SEVERITY_WARNING, "us-east-1",
            alert="agent_silent_database_alive")  # fmt: skip
    assert h.only().cause == "agent_silent"
    h.state("us-east-1", "DEGRADED", "no report; eu-west-1 still streams from it")
    assert h.only().cause == "agent_silent"  # as severe, not more
    h.at(1005.0).state("us-east-1", "UNHEALTHY")
    assert h.only().cause == "region_unhealthy"
    assert h.only().severity == pb.SEVERITY_CRITICAL


def test_an_agent_silent_while_its_database_lives_resolves_when_the_region_is_healthy():
    h = History()
    h.event(pb.EVENT_KIND_ALERT, pb.SEVERITY_WARNING, "us-east-1",
            alert="agent_silent_database_alive")  # fmt: skip
    h.at(1010.0).event(pb.EVENT_KIND_AGENT_CONNECTED, region="us-east-1")
    assert h.only().state == OPEN
    h.at(1012.0).state("us-east-1", "HEALTHY")
    assert h.only().state == RESOLVED
    assert len(h.only().timeline) == 3


def test_a_planned_switchover_is_information_not_a_page():
    h = History()
    h.failover("s1", "us-east-1", "eu-west-1", kind="switchover")
    h.state("us-east-1", "FAILOVER")
    h.event(pb.EVENT_KIND_FENCED, pb.SEVERITY_WARNING, "us-east-1", "s1", cause="command")
    h.event(pb.EVENT_KIND_PROMOTED, pb.SEVERITY_WARNING, "eu-west-1", "s1")
    h.event(pb.EVENT_KIND_REJOINED, region="us-east-1", rewound=False)
    h.at(1003.0).event(pb.EVENT_KIND_FAILOVER_COMPLETED, region="us-east-1", failover_id="s1")
    assert h.only().state == OPEN  # us-east-1 is still in FAILOVER
    h.at(1004.0).state("us-east-1", "HEALTHY")
    incident = h.only()
    assert incident.cause == "failover"
    assert incident.severity == pb.SEVERITY_INFO
    assert incident.state == RESOLVED
    assert list(incident.planned_failover_ids) == ["s1"]


def test_a_real_failure_during_a_switchover_still_pages():
    h = History()
    h.failover("s1", "us-east-1", "eu-west-1", kind="switchover")
    h.state("eu-west-1", "UNHEALTHY")
    assert h.only().severity == pb.SEVERITY_CRITICAL
    assert h.only().cause == "region_unhealthy"


def test_an_aborted_failover_leaves_its_incident_waiting_for_the_region():
    h = History()
    h.state("us-east-1", "UNHEALTHY")
    h.failover("f1", "us-east-1", "")
    h.at(1005.0).event(
        pb.EVENT_KIND_FAILOVER_ABORTED, pb.SEVERITY_CRITICAL, "us-east-1", "f1", error="x"
    )
    assert h.only().awaiting == ["us-east-1 healthy"]
    assert h.only().HasField("failover_finished_at")


def test_a_fence_by_itself_opens_an_incident_lifted_by_unfence():
    h = History()
    h.event(pb.EVENT_KIND_FENCED, pb.SEVERITY_CRITICAL, "us-east-1", cause="self")
    assert h.only().cause == "fence"
    assert h.only().awaiting == ["us-east-1 unfenced"]
    h.at(1001.0).event(pb.EVENT_KIND_UNFENCED, region="us-east-1")
    assert h.only().state == RESOLVED


def test_lag_past_the_budget_is_its_own_cause():
    h = History()
    h.state("ap-southeast-1", "DEGRADED", "replica lag 70.0 MiB over budget")
    assert h.only().cause == "replica_lag"
    h.at(1060.0).state("ap-southeast-1", "HEALTHY")
    assert h.only().state == RESOLVED


def test_a_promotion_refused_past_the_lag_budget_joins_its_failover():
    h = History()
    h.state("us-east-1", "UNHEALTHY")
    h.failover("f1", "us-east-1", "")
    h.at(1100.0).event(
        pb.EVENT_KIND_ALERT, pb.SEVERITY_CRITICAL, "us-east-1", "f1", alert="lag_budget"
    )
    assert h.only().cause == "region_unhealthy"
    assert h.only().timeline[-1].attributes["alert"] == "lag_budget"


def test_synchronous_fallback_resolves_when_a_standby_is_healthy_again():
    h = History()
    h.state("eu-west-1", "UNHEALTHY")
    h.at(1003.0).event(pb.EVENT_KIND_ALERT, pb.SEVERITY_WARNING, "us-east-1",
                       alert="synchronous_degraded")  # fmt: skip
    incident = h.only()  # a consequence of the standby's failure: the same incident
    assert sorted(incident.awaiting) == [
        "eu-west-1 healthy",
        "synchronous replication restored on us-east-1",
    ]
    h.at(1050.0).state("eu-west-1", "HEALTHY")
    assert h.only().state == RESOLVED


def test_synchronous_fallback_alone_is_its_own_cause():
    h = History()
    h.event(pb.EVENT_KIND_ALERT, pb.SEVERITY_WARNING, "us-east-1", alert="synchronous_degraded")
    assert h.only().cause == "synchronous_fallback"
    h.at(1001.0).state("us-east-1", "HEALTHY")  # the primary itself says nothing of standbys
    assert h.only().state == OPEN
    h.at(1002.0).state("ap-southeast-1", "HEALTHY")
    assert h.only().state == RESOLVED


def test_a_leader_change_storm_opens_once_and_ends_after_a_quiet_window():
    h = History(Correlator(CorrelationSettings(storm_count=3, storm_window=60)))
    h.event(pb.EVENT_KIND_LEADER_ELECTED)
    h.at(1020.0).event(pb.EVENT_KIND_LEADER_ELECTED)
    assert h.incidents() == []
    h.at(1040.0).event(pb.EVENT_KIND_LEADER_ELECTED)
    h.at(1050.0).event(pb.EVENT_KIND_LEADER_ELECTED)
    storm = h.only()
    assert storm.cause == "leader_storm" and storm.regions == []
    assert len(storm.timeline) == 2
    assert h.correlator.tick(1100.0) == set()  # 1050 is within the window
    assert h.correlator.tick(1111.0) == {storm.id}
    assert h.only().state == RESOLVED
    assert h.only().resolved_at.seconds == 1111


def test_elections_are_not_a_storm_when_spread_out():
    h = History(Correlator(CorrelationSettings(storm_count=3, storm_window=60)))
    for t in (1000.0, 1050.0, 1100.0, 1150.0):
        h.at(t).event(pb.EVENT_KIND_LEADER_ELECTED)
    assert h.incidents() == []


def test_a_new_leader_mid_failover_is_on_its_timeline():
    h = History()
    h.state("us-east-1", "UNHEALTHY")
    h.at(1040.0).failover("f1", "us-east-1", "")
    h.at(1045.0).event(pb.EVENT_KIND_LEADER_ELECTED)
    assert h.only().timeline[-1].kind == pb.EVENT_KIND_LEADER_ELECTED


def test_informational_events_open_nothing():
    h = History()
    h.event(pb.EVENT_KIND_AGENT_CONNECTED, region="us-east-1")
    h.event(pb.EVENT_KIND_STRATEGY_CHANGED)
    h.state("us-east-1", "HEALTHY")
    h.state("us-east-1", "PENDING")
    h.event(pb.EVENT_KIND_LEADER_ELECTED)
    assert h.incidents() == []


def test_an_event_already_correlated_is_ignored():
    h = History()
    h.state("us-east-1", "UNHEALTHY")
    replay = pb.Event(sequence=1, kind=pb.EVENT_KIND_REGION_STATE_CHANGED, region="us-east-1")
    replay.attributes["to"] = "HEALTHY"
    assert h.correlator.observe(replay) == set()
    assert h.only().state == OPEN


def test_a_long_timeline_keeps_its_beginning_and_its_end():
    h = History(Correlator(CorrelationSettings(timeline_limit=10, timeline_head=3)))
    h.state("us-east-1", "UNHEALTHY")
    for _ in range(20):
        h.event(pb.EVENT_KIND_COMMAND_FAILED, pb.SEVERITY_WARNING, "us-east-1")
    incident = h.only()
    assert len(incident.timeline) == 10
    assert incident.timeline_dropped == 11
    assert [e.sequence for e in incident.timeline][:4] == [1, 2, 3, 15]
    assert incident.timeline[-1].sequence == 21


def test_forget_drops_the_oldest_resolved_only():
    h = History()
    for i, region in enumerate(("a", "b", "c")):
        h.at(1000.0 + 1000 * i).state(region, "UNHEALTHY")
        h.at(1010.0 + 1000 * i).state(region, "HEALTHY")
    h.at(5000.0).state("d", "UNHEALTHY")
    assert h.correlator.forget(keep=1) == ["inc-1", "inc-3"]
    assert sorted(h.correlator.incidents) == ["inc-5", "inc-7"]


def test_a_successor_continues_from_what_was_stored():
    h = History()
    h.state("us-east-1", "UNHEALTHY")
    h.failover("f1", "us-east-1", "")
    stored = [pb.Incident.FromString(i.SerializeToString()) for i in h.incidents()]
    ledger = Ledger.decode(h.correlator.ledger.encode())
    assert ledger.cursor == 2 and ledger.region_states == {"us-east-1": "UNHEALTHY"}
    successor = History(Correlator(incidents=stored, ledger=ledger))
    successor.sequence, successor.now = h.sequence, 1005.0
    successor.event(pb.EVENT_KIND_FAILOVER_COMPLETED, region="us-east-1", failover_id="f1")
    assert successor.only().id == "inc-1"
    assert successor.only().awaiting == ["us-east-1 healthy"]
    assert successor.only().revision == 3


def test_a_late_entry_of_a_finished_failover_does_not_reopen_its_incident():
    h = History()
    h.failover("s1", "us-east-1", "eu-west-1", kind="switchover")
    h.at(1003.0).event(pb.EVENT_KIND_FAILOVER_COMPLETED, region="us-east-1", failover_id="s1")
    assert h.only().state == RESOLVED
    h.at(1004.0).event(pb.EVENT_KIND_UNFENCED, region="us-east-1", failover_id="s1")
    assert h.only().state == RESOLVED
    # A fence of the same failover is news: it reopens.
    h.at(1005.0).event(pb.EVENT_KIND_FENCED, pb.SEVERITY_CRITICAL, "us-east-1", "s1")
    assert h.only().state == OPEN and h.only().reopened == 1


def test_a_leader_change_storm_during_a_region_incident_is_its_own_incident():
    h = History(Correlator(CorrelationSettings(storm_count=3, storm_window=60)))
    h.event(pb.EVENT_KIND_LEADER_ELECTED)
    h.at(1010.0).state("us-east-1", "UNHEALTHY")
    h.at(1012.0).event(pb.EVENT_KIND_LEADER_ELECTED)  # a new leader mid-incident: an entry
    h.at(1014.0).event(pb.EVENT_KIND_LEADER_ELECTED)  # the third: a storm
    region, storm = h.incidents()
    assert region.cause == "region_unhealthy" and storm.cause == "leader_storm"
    assert region.timeline[-1].kind == pb.EVENT_KIND_LEADER_ELECTED
    assert "elections quiet" not in region.awaiting
    h.at(1020.0).state("us-east-1", "HEALTHY")
    assert h.incidents()[0].state == RESOLVED  # without waiting for the storm to end
    assert h.incidents()[1].state == OPEN


def test_a_region_failing_during_a_storm_is_not_part_of_the_storm():
    h = History(Correlator(CorrelationSettings(storm_count=3, storm_window=60)))
    for t in (1000.0, 1001.0, 1002.0):
        h.at(t).event(pb.EVENT_KIND_LEADER_ELECTED)
    h.at(1005.0).state("eu-west-1", "UNHEALTHY")
    storm, region = h.incidents()
    assert storm.cause == "leader_storm" and not storm.regions
    assert region.cause == "region_unhealthy" and region.awaiting == ["eu-west-1 healthy"]


def test_rows_unlike_across_regions_open_a_divergence_that_a_clean_check_resolves():
    h = History()
    check = pb.EVENT_KIND_CONSISTENCY_CHECKED
    h.event(check, pb.SEVERITY_WARNING, check="data", consistent="false", tables_unlike="")
    assert h.incidents() == [], "ranges that only kept changing are no divergence"
    h.at(1001.0).event(
        check,
        pb.SEVERITY_CRITICAL,
        "ap-southeast-1",
        check="data",
        consistent="false",
        tables_unlike="public.ledger",
    )
    incident = h.only()
    assert (incident.cause, incident.severity) == ("data_divergence", pb.SEVERITY_CRITICAL)
    assert incident.awaiting == ["data consistent (latitude verify)"]
    # The WAL-position check agreeing says nothing of the rows.
    h.at(1100.0).event(check, consistent="true", primary_region="us-east-1")
    assert h.only().state == OPEN
    h.at(1200.0).event(check, check="data", consistent="true", tables_unlike="")
    assert h.only().state == RESOLVED
