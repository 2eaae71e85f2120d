"""Routing speed: Resolve against one coordinator beside a bare grpc.aio server, the client
library's local resolves, and how fast a new table reaches watching clients.

Run: .venv/bin/python bench/resolve.py [--seconds 3] [--rounds 5] [--concurrency 32]
     [--watchers 20]
Prints one JSON object. Everything is real: a full local stack (etcd x3, PostgreSQL x3,
coordinators x3, agents x3); the baseline is a grpc.aio server in its own process whose unary
handler returns an empty message at once. Both servers are driven by the same load generator
(a separate process, grpc.aio, ``--concurrency`` calls in flight, then one call at a time for
latency), so the ratio compares the servers, not the client. On this 2-core machine the load
generator and the server share the CPU, and one measurement of the same server can differ
from the next by a third: the two servers are measured in ``--rounds`` alternating rounds
(bare first in even rounds, Resolve first in odd ones), and the ratio is of the medians.

- Resolve: a read for a client by public IP (geographic, the cluster default), five clients
  asking again and again (a replica keeps its serialized answer to a request it has seen, per
  table version); then once with 200,000 different addresses, each call a new client.
- Local resolves: RoutingClient.resolve() for a cached IP, one thread.
- Propagation: SetStrategy flips the default strategy; each of ``--watchers`` RoutingClients
  notes when the new table arrives; the figure is arrival minus the table's generated_at
  (the leader's clock, same host).
- TLS: a second stack runs with ``latitude up --tls`` beside the first, and Resolve against one
  of its followers (a reader's certificate, mutual TLS, every call authorised by role) is
  measured in the same alternating rounds as the plaintext one; the figure is the ratio of
  their medians (target: at least 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latitude.admin_client import call_leader, cluster_status
from latitude.channels import open_channel
from latitude.client import RoutingClient
from latitude.pki import CertFiles
from latitude.stack.harness import running_stack
from latitude.v1 import admin_pb2, routing_pb2

IPS = ["81.2.69.160", "8.8.8.8", "133.242.0.1", "202.166.126.1", "85.214.132.117"]
METHOD = "/latitude.v1.RoutingService/Resolve"
DISTINCT = 200_000


def bare_server(port_queue: multiprocessing.Queue) -> None:
    """A grpc.aio server whose Resolve does nothing: the speed of a bare call."""

    async def serve() -> None:
        async def noop(request: bytes, context) -> bytes:
            return b""

        server = grpc.aio.server()
        # Registered as generated code registers a service (and as the coordinator does).
        handlers = {"Resolve": grpc.unary_unary_rpc_method_handler(noop)}
        service = "latitude.v1.RoutingService"
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        await server.wait_for_termination()

    asyncio.run(serve())


def distinct_ips(count: int) -> list[str]:
    """``count`` different IPv4 addresses, spread over the whole space (fixed seed)."""
    rng = random.Random(7)
    return [str(ipaddress.IPv4Address(n)) for n in rng.sample(range(1 << 24, 224 << 24), count)]


def load(
    address: str,
    seconds: float,
    concurrency: int,
    out: multiprocessing.Queue,
    distinct: bool,
    tls: CertFiles | None,
) -> None:
    """Throughput with ``concurrency`` calls in flight, then latency one call at a time."""

    async def run() -> dict:
        ips = distinct_ips(DISTINCT) if distinct else IPS
        requests = [routing_pb2.ResolveRequest(client_ip=ip).SerializeToString() for ip in ips]
        async with open_channel(address, tls) as channel:
            call = channel.unary_unary(METHOD)
            for body in requests[:5]:  # warm up
                await call(body, timeout=5)
            done = 0
            deadline = time.perf_counter() + seconds

            async def worker(i: int) -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await call(requests[(i + done) % len(requests)], timeout=5)
                    done += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(concurrency)))
            throughput = done / (time.perf_counter() - started)
            latencies = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await call(requests[len(latencies) % len(requests)], timeout=5)
                latencies.append(time.perf_counter() - t0)
            latencies.sort()
            return {
                "calls_per_second": round(throughput),
                "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
                "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
            }

    out.put(asyncio.run(run()))


def summary(rounds: list[dict]) -> dict:
    """Medians over the rounds, and each round's throughput."""
    return {
        "calls_per_second": round(statistics.median(r["calls_per_second"] for r in rounds)),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 3),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 3),
        "calls_per_second_by_round": [r["calls_per_second"] for r in rounds],
    }


def measure(
    address: str,
    seconds: float,
    concurrency: int,
    *,
    distinct: bool = False,
    tls: CertFiles | None = None,
) -> dict:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    process = ctx.Process(target=load, args=(address, seconds, concurrency, out, distinct, tls))
    process.start()
    result = out.get(timeout=seconds * 4 + 60)
    process.join()
    return result


async def local_resolves(coordinators: list[str], seconds: float) -> dict:
    async with RoutingClient(coordinators) as client:
        for ip in IPS:
            client.resolve(ip=ip)  # locate once: the cache is part of the design
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            for _ in range(1000):
                client.resolve(ip="81.2.69.160")
            count += 1000
        rate = count / (time.perf_counter() - started)
        explicit = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            for _ in range(1000):
                client.resolve(location=(40.71, -74.01))
            explicit += 1000
        explicit_rate = explicit / (time.perf_counter() - started)
    return {
        "resolves_per_second_cached_ip": round(rate),
        "resolves_per_second_explicit_location": round(explicit_rate),
    }


async def propagation(coordinators: list[str], watchers: int, trials: int) -> dict:
    clients = [RoutingClient(coordinators) for _ in range(watchers)]
    await asyncio.gather(*(c.start() for c in clients))
    delays: list[float] = []
    strategies = [routing_pb2.STRATEGY_LATENCY, routing_pb2.STRATEGY_GEOGRAPHIC]
    try:
        for trial in range(trials):
            strategy = strategies[trial % 2]
            arrivals: list[float] = []

            async def note(client: RoutingClient, version: int, into: list[float]) -> None:
                await client.wait_for(lambda t: t.version >= version, 5)
                into.append(time.time())

            reply = await call_leader(
                coordinators, "SetStrategy", admin_pb2.SetStrategyRequest(strategy=strategy), 5
            )
            await asyncio.gather(*(note(c, reply.table_version, arrivals) for c in clients))
            table = clients[0].table
            generated = table.generated_at.ToNanoseconds() / 1e9
            delays += [a - generated for a in arrivals]
            await asyncio.sleep(0.2)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    delays.sort()
    return {
        "watchers": watchers,
        "trials": trials,
        "p50_ms": round(delays[len(delays) // 2] * 1000, 1),
        "p99_ms": round(delays[int(len(delays) * 0.99)] * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1),
    }


async def clients(coordinators: list[str], args: argparse.Namespace) -> tuple[dict, dict]:
    local = await local_resolves(coordinators, args.seconds)
    spread = await propagation(coordinators, args.watchers, args.trials)
    return local, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    bare = ctx.Process(target=bare_server, args=(ports,), daemon=True)
    bare.start()
    bare_address = f"127.0.0.1:{ports.get(timeout=30)}"
    try:
        with running_stack(tls=False) as stack, running_stack(tls=True) as secure:
            coordinators = stack.coordinator_addresses(stack.state())
            # A follower, not the leader: Resolve is served by every replica alike, and the
            # leader has the agents' streams and the table to build besides.
            leader = asyncio.run(cluster_status(coordinators)).leader.address
            target = next(a for a in coordinators if a != leader)
            reader = secure.client_tls(secure.state(), "reader")
            secured = secure.coordinator_addresses(secure.state())
            secure_leader = asyncio.run(cluster_status(secured, tls=reader)).leader.address
            secure_target = next(a for a in secured if a != secure_leader)
            plan = [(bare_address, None), (target, None), (secure_target, reader)]
            rounds: dict[str, list[dict]] = {address: [] for address, _ in plan}
            for i in range(args.rounds):
                for address, tls in plan if i % 2 == 0 else reversed(plan):
                    rounds[address].append(
                        measure(address, args.seconds, args.concurrency, tls=tls)
                    )
            baseline, resolve = summary(rounds[bare_address]), summary(rounds[target])
            resolve_tls = summary(rounds[secure_target])
            # Every call a client the replica has not answered before: the decision made and
            # serialized each time, and most addresses located for the first time.
            cold = measure(target, args.seconds, args.concurrency, distinct=True)
            # One event loop for every grpc.aio client in this process.
            local, spread = asyncio.run(clients(coordinators, args))
    finally:
        bare.kill()
    ratio = resolve["calls_per_second"] / baseline["calls_per_second"]
    tls_ratio = resolve_tls["calls_per_second"] / resolve["calls_per_second"]
    print(
        json.dumps(
            {
                "benchmark": "resolve",
                "cpus": os.cpu_count(),
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "bare_grpc_aio_noop": baseline,
                "resolve_one_coordinator": resolve,
                "resolve_one_coordinator_mutual_tls": resolve_tls,
                "throughput_ratio_tls_vs_plaintext": round(tls_ratio, 3),
                f"resolve_one_coordinator_{DISTINCT}_distinct_ips": cold,
                "throughput_ratio_resolve_vs_bare": round(ratio, 3),
                "p50_latency_ratio_bare_vs_resolve": round(
                    baseline["p50_ms"] / resolve["p50_ms"], 3
                ),
                "client_library": local,
                "table_propagation_to_watchers": spread,
                "targets": {
                    "throughput_ratio": 0.85,
                    "throughput_ratio_tls_vs_plaintext": 0.8,
                    "local_resolves_per_second": 200000,
                    "propagation_p99_ms": 200,
                },
                "targets_met": {
                    "throughput_ratio": ratio >= 0.85,
                    "throughput_ratio_tls_vs_plaintext": tls_ratio >= 0.8,
                    "local_resolves_per_second": local["resolves_per_second_cached_ip"] >= 200000,
                    "propagation_p99_ms": spread["p99_ms"] <= 200,
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
