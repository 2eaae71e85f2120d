"""``latitude incidents`` and ``latitude events --follow``.

``--follow`` polls ListEvents (every ``interval``, 0.5 s) rather than holding a server stream:
events reach etcd in batches anyway, any coordinator answers a poll from etcd, so a follower
rides through a leader change or a coordinator's restart by asking the next one, and the
contract needs nothing new. Each poll asks for events since the newest one seen (less a
margin for clocks that differ between leaders) and prints those with a higher sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import signal
import sys
import time
from collections.abc import Sequence

from google.protobuf import json_format

from latitude.admin_client import NoCoordinator, call_any
from latitude.enums import short_name
from latitude.errors import LatitudeError
from latitude.pki import CertFiles
from latitude.table import human_duration, render
from latitude.v1 import admin_pb2

FOLLOW_INTERVAL = 0.5
# Events of a later sequence may carry an earlier time (another leader's clock).
_SKEW = 30.0


def _seconds(timestamp) -> float:
    return timestamp.ToNanoseconds() / 1e9


def _clock(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def format_incidents(incidents: Sequence[admin_pb2.Incident], now: float) -> str:
    if not incidents:
        return "no incidents"
    rows = []
    for i in incidents:
        resolved = i.state == admin_pb2.INCIDENT_STATE_RESOLVED
        end = _seconds(i.resolved_at) if resolved else now
        rows.append(
            [
                i.id,
                short_name(admin_pb2.IncidentState, i.state, lower=True)
                + (f" (x{i.reopened + 1})" if i.reopened else ""),
                short_name(admin_pb2.Severity, i.severity, lower=True),
                i.cause,
                ",".join(i.regions) or "-",
                _clock(_seconds(i.opened_at)),
                human_duration(end - _seconds(i.opened_at)),
                i.revision,
                "-" if resolved else "; ".join(i.awaiting) or "-",
            ]
        )
    headers = ["ID", "STATE", "SEVERITY", "CAUSE", "REGIONS", "OPENED", "DURATION", "UPDATES"]
    return render([*headers, "WAITING FOR"], rows)


def format_deliveries(incidents: Sequence[admin_pb2.Incident]) -> str:
    """Per incident and alert target: what it was last told, or why it fails."""
    rows = []
    for i in incidents:
        for d in i.deliveries:
            told = f"{d.delivered_kind} (r{d.delivered_revision})" if d.delivered else "-"
            failing = f"x{d.failed_attempts}: {d.last_error}" if d.failed_attempts else "-"
            rows.append([i.id, d.target, told, d.delivered, failing])
    if not rows:
        return ""
    return render(["INCIDENT", "ALERT TARGET", "LAST TOLD", "SENT", "FAILING"], rows)


def incidents_json(incidents: Sequence[admin_pb2.Incident]) -> list[dict]:
    return [json_format.MessageToDict(i, preserving_proto_field_name=True) for i in incidents]


async def show(args, addresses: list[str], tls: CertFiles | None = None) -> int:
    """``latitude incidents``: open ones (``--all``: resolved too), newest first; ``tls``:
    the certificate to call with (None: plaintext)."""
    if args.limit < 0:
        raise LatitudeError(f"--limit: must not be negative, got {args.limit}")
    request = admin_pb2.ListIncidentsRequest(include_resolved=args.all, limit=args.limit)
    response = await call_any(addresses, "ListIncidents", request, args.timeout, tls=tls)
    if args.json:
        print(json.dumps(incidents_json(response.incidents), indent=2))
        return 0
    print(format_incidents(response.incidents, time.time()))
    deliveries = format_deliveries(response.incidents)
    if deliveries and args.deliveries:
        print()
        print(deliveries)
    return 0


def event_line(event: admin_pb2.Event) -> str:
    """One event on one line, in fixed columns (a followed history has no table to align)."""
    moment = datetime.datetime.fromtimestamp(_seconds(event.time))
    return "  ".join(
        [
            moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            short_name(admin_pb2.Severity, event.severity, lower=True).ljust(8),
            (event.region or "-").ljust(14),
            short_name(admin_pb2.EventKind, event.kind, lower=True).ljust(23),
            event.message,
        ]
    )


class Follower:
    """The events after the newest one seen, poll after poll."""

    def __init__(self, request: admin_pb2.ListEventsRequest) -> None:
        self._request = request
        self.last_sequence = 0
        self.last_time = 0.0

    def next_request(self) -> admin_pb2.ListEventsRequest:
        request = admin_pb2.ListEventsRequest()
        request.CopyFrom(self._request)
        if self.last_sequence:
            request.limit = 1000
            request.since.FromNanoseconds(int(max(0.0, self.last_time - _SKEW) * 1e9))
        return request

    def fresh(self, events: Sequence[admin_pb2.Event]) -> list[admin_pb2.Event]:
        new = [e for e in events if e.sequence > self.last_sequence]
        if new:
            self.last_sequence = new[-1].sequence
            self.last_time = max(self.last_time, max(_seconds(e.time) for e in new))
        return new


async def follow(
    addresses: list[str],
    request: admin_pb2.ListEventsRequest,
    *,
    as_json: bool,
    timeout: float,
    interval: float = FOLLOW_INTERVAL,
    out=None,
    tls: CertFiles | None = None,
) -> int:
    """Print the newest events, then each new one as it comes, until interrupted (0)."""
    out = out or sys.stdout
    follower = Follower(request)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    unreachable = False
    try:
        while not stop.is_set():
            try:
                response = await call_any(
                    addresses, "ListEvents", follower.next_request(), timeout, tls=tls
                )
            except NoCoordinator as err:
                if not unreachable:
                    print(f"latitude: {err}; still trying", file=sys.stderr)
                unreachable = True
            else:
                if unreachable:
                    print("latitude: a coordinator answers again", file=sys.stderr)
                unreachable = False
                for event in follower.fresh(response.events):
                    if as_json:
                        text = json_format.MessageToDict(event, preserving_proto_field_name=True)
                        print(json.dumps(text), file=out)
                    else:
                        print(event_line(event), file=out)
                out.flush()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    return 0
