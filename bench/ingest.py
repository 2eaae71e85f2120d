"""One coordinator fed by N simulated agents at 2 Hz: CPU cost and report latency.

Run: .venv/bin/python bench/ingest.py [--agents 100,500,1000] [--seconds 20]
Prints one JSON object. The coordinator is the real program (a subprocess, leader of its own
etcd prefix on the local stack's etcd); the agents are simulated streams in this process, each
sending a realistic Report (database status with replicas, two checks, peers) every 0.5 s.
CPU is the coordinator process's user+system time over the measurement window. Latency is
report sent -> ReportAck received, an upper bound of report -> registry (the leader acks a
report after the registry has taken it; it acks every second report by default).

Each size runs twice: plaintext, then mutual TLS (a CA made for the run; the coordinator with
its certificate, each simulated agent with its own region's), so the JSON shows what TLS
costs beside what it protects. In plaintext every simulated agent comes from one host, so the
coordinator's per-caller stream cap is raised for the run (real agents each have their own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

from latitude import pki
from latitude.channels import open_channel
from latitude.pki import CertFiles, Identity
from latitude.stack.harness import running_stack
from latitude.v1 import agent_pb2, agent_pb2_grpc, common_pb2

INTERVAL = 0.5


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def report(sequence: int) -> agent_pb2.Report:
    message = agent_pb2.Report(
        sequence=sequence,
        database=common_pb2.DatabaseStatus(
            role=common_pb2.DATABASE_ROLE_STANDBY,
            timeline_id=1,
            received_lsn=123456789,
            replayed_lsn=123456700,
            replay_lag_bytes=89,
            replay_lag_seconds=0.2,
            wal_receiver_streaming=True,
            upstream_address="10.0.0.1:5432",
            system_identifier=7312345678901234567,
            server_version="15.18",
        ),
        checks=[
            common_pb2.CheckResult(name="api", ok=True, latency_seconds=0.012),
            common_pb2.CheckResult(name="grpc", ok=True, latency_seconds=0.003),
        ],
        capacity_utilization=0.4,
        error_rate=0.001,
        response_time_seconds=0.015,
        peers=[agent_pb2.PeerRtt(region="peer", rtt_seconds=0.08, reachable=True)],
    )
    message.sent_at.FromNanoseconds(time.time_ns())
    message.database.observed_at.FromNanoseconds(time.time_ns())
    return message


async def agent(
    address: str,
    region: str,
    stop: asyncio.Event,
    latencies: list[float],
    sent_count: list[int],
    tls: CertFiles | None,
) -> None:
    async with open_channel(address, tls) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        hello = agent_pb2.Hello(
            region=region,
            agent_id=f"{region}/bench",
            location=common_pb2.Location(latitude=10.0, longitude=20.0),
            capacity=100,
            priority=1,
            endpoints=[
                common_pb2.Endpoint(
                    name="pg", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address="10.0.0.2:5432"
                )
            ],
        )
        await call.write(agent_pb2.AgentMessage(hello=hello))
        first = await call.read()
        assert first.WhichOneof("body") == "welcome", first
        sent: dict[int, float] = {}

        async def read() -> None:
            while (message := await call.read()) is not grpc.aio.EOF:
                if message.WhichOneof("body") == "report_ack":
                    started = sent.pop(message.report_ack.sequence, None)
                    if started is not None:
                        latencies.append(time.perf_counter() - started)

        reader = asyncio.create_task(read())
        await asyncio.sleep(random.random() * INTERVAL)  # spread agents over the interval
        sequence = 0
        next_at = time.monotonic()
        while not stop.is_set():
            sequence += 1
            sent[sequence] = time.perf_counter()
            await call.write(agent_pb2.AgentMessage(report=report(sequence)))
            sent_count[0] += 1
            next_at += INTERVAL
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        call.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def certificates(directory: Path, regions: list[str]) -> dict[str, CertFiles]:
    """A CA, the coordinator's certificate, a reader's and one per simulated agent."""
    pki.create_ca(directory)
    certs = {
        "coordinator": pki.issue(
            directory, "coordinator", identity=Identity("coordinator"), hosts=["127.0.0.1"]
        ),
        "reader": pki.issue(directory, "reader", identity=Identity("reader")),
    }
    for region in regions:
        certs[region] = pki.issue(directory, region, identity=Identity("agent", region))
    return certs


async def measure(
    endpoints: list[str],
    agents: int,
    seconds: float,
    warmup: float,
    certs: dict[str, CertFiles] | None,
) -> dict:
    regions = [f"r{i:04d}" for i in range(agents)]
    address = f"127.0.0.1:{free_port()}"
    mode = "tls" if certs else "plaintext"
    prefix = f"/bench-ingest-{agents}-{mode}-{os.getpid()}"
    flags = []
    if certs:
        own = certs["coordinator"]
        flags = ["--tls-ca", str(own.ca), "--tls-cert", str(own.cert), "--tls-key", str(own.key)]
    env = dict(os.environ)
    env["LATITUDE_COORDINATOR_STREAMS_PER_CALLER"] = str(max(64, agents + 16))
    env["LATITUDE_COORDINATOR_STREAMS_TOTAL"] = str(max(4096, agents + 16))
    coordinator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator.main", "--id", "bench", "--listen", address,
        "--etcd", ",".join(endpoints), "--etcd-prefix", prefix, "--regions", ",".join(regions),
        "--log-level", "WARNING", *flags, env=env,
    )  # fmt: skip
    try:
        await wait_leader(address, certs["reader"] if certs else None)
        stop = asyncio.Event()
        latencies: list[float] = []
        sent = [0]
        tasks = [
            asyncio.create_task(
                agent(address, r, stop, latencies, sent, certs[r] if certs else None)
            )
            for r in regions
        ]
        await asyncio.sleep(warmup)
        latencies.clear()
        sent0, cpu0, t0 = sent[0], cpu_seconds(coordinator.pid), time.monotonic()
        await asyncio.sleep(seconds)
        sent1, cpu1, t1 = sent[0], cpu_seconds(coordinator.pid), time.monotonic()
        count = sent1 - sent0
        acked = len(latencies)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        coordinator.terminate()
        await coordinator.wait()
    cpu = cpu1 - cpu0
    if not latencies:
        raise RuntimeError(
            f"{agents} agents, {mode}: no report was acknowledged in the window; the "
            "coordinator probably lost its leadership (etcd slow on a loaded machine: see its "
            "log above), so there is nothing to measure: run again on a quieter machine"
        )
    latencies.sort()
    return {
        "agents": agents,
        "mode": mode,
        "reports_sent": count,
        "reports_per_second": round(count / (t1 - t0), 1),
        "acks_received": acked,
        "coordinator_cpu_seconds_per_1000_reports": round(1000 * cpu / max(count, 1), 4),
        "coordinator_cores_used": round(cpu / (t1 - t0), 3),
        "report_to_ack_p50_ms": round(1000 * statistics.median(latencies), 2),
        "report_to_ack_p99_ms": round(1000 * latencies[int(0.99 * (acked - 1))], 2),
    }


async def wait_leader(address: str, tls: CertFiles | None) -> None:
    from latitude.admin_client import NoCoordinator, cluster_status

    deadline = time.monotonic() + 30
    while True:
        try:
            if (await cluster_status([address], 1.0, tls=tls)).leader.leader_id == "bench":
                return
        except NoCoordinator:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the bench coordinator never became leader")
        await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--modes",
        default="plaintext,tls",
        help="plaintext, tls or both (quick profiling loops need only one)",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.agents.split(",")]
    modes = args.modes.split(",")
    if not modes or not set(modes) <= {"plaintext", "tls"}:
        parser.error(f"--modes: plaintext, tls or both, got {args.modes!r}")
    regions = [f"r{i:04d}" for i in range(max(sizes))]
    with running_stack() as stack, tempfile.TemporaryDirectory() as directory:
        endpoints = [m.endpoint for m in stack.etcd_members(stack.state())]
        certs = certificates(Path(directory), regions) if "tls" in modes else None
        results = []
        for n in sizes:
            for mode in [None] * ("plaintext" in modes) + [certs] * ("tls" in modes):
                results.append(asyncio.run(measure(endpoints, n, args.seconds, args.warmup, mode)))
    by = {(r["agents"], r["mode"]): r for r in results}
    tls_cost = {
        str(n): {
            "cpu_ratio_tls_vs_plaintext": round(
                by[n, "tls"]["coordinator_cpu_seconds_per_1000_reports"]
                / max(by[n, "plaintext"]["coordinator_cpu_seconds_per_1000_reports"], 1e-9),
                3,
            ),
            "p50_ms_plaintext_vs_tls": [
                by[n, "plaintext"]["report_to_ack_p50_ms"],
                by[n, "tls"]["report_to_ack_p50_ms"],
            ],
        }
        for n in sizes
        if (n, "tls") in by and (n, "plaintext") in by
    }
    print(
        json.dumps(
            {
                "benchmark": "ingest",
                "report_interval_seconds": INTERVAL,
                "window_seconds": args.seconds,
                "target": "1000 agents at 2 Hz within 0.5 core",
                "cpus": os.cpu_count(),
                "results": results,
                "tls_cost": tls_cost,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
