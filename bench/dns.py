"""DNS speed: one coordinator's responder beside a bare asyncio dnspython responder that
answers a fixed record, driven by the same load generator in one run.

Run: .venv/bin/python bench/dns.py [--seconds 3] [--rounds 5] [--inflight 32]
Prints one JSON object. Everything is real: a full local stack (etcd x3, PostgreSQL x3,
coordinators x3, agents x3), and a follower coordinator's DNS port (the leader also builds the
table and holds the agents' streams). The baseline is a process running an asyncio
DatagramProtocol that parses each query with dnspython and answers one fixed A record (no
cache: what a minimal dnspython server does).

The load generator is one process with one UDP socket and prebuilt query packets (only the
ID changes): ``--inflight`` queries outstanding, a new one sent for each answer (a query
unanswered for 1 s counts as lost and is replaced), then one query at a time for latency. It is
light on purpose: on this 2-core machine it shares the CPU with the server measured. Queries
are ``read.latitude.test. A`` with an EDNS Client Subnet option for the five cities of
tests/integration/test_routing.py's clients (each answered for its own network), and then,
for 50,000 distinct /24s (every query a client the replica has not answered: located,
decided and rendered each time; other /24s in each round). The bare responder, the
coordinator's kept answers and its cold path are measured in ``--rounds`` alternating rounds
and the ratios are of the medians (target: at least 0.8 for the kept answers; the cold path's
is reported beside it).

The stack's coordinators run without response-rate limiting (``dns_rate_limit`` 0): the load
generator is one source asking one name, exactly what the limit stops; what is measured here
is the answering.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import select
import socket
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's directory comes first on the path, and this file is named like
# dnspython's package: take the directory off so that "import dns" finds dnspython.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import dns.edns  # noqa: E402 - after the path is fixed
import dns.message  # noqa: E402 - after the path is fixed
import dns.rrset  # noqa: E402 - after the path is fixed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latitude.admin_client import cluster_status  # noqa: E402 - after the path is fixed
from latitude.stack.harness import running_stack  # noqa: E402 - after the path is fixed
from latitude.stack.stack import DNS_ZONE  # noqa: E402 - after the path is fixed

NAME = f"read.{DNS_ZONE}"
SUBNETS = ["81.2.69.0", "8.8.8.0", "133.242.0.0", "202.166.126.0", "85.214.132.0"]
DISTINCT = 50_000
LOST_AFTER = 1.0


def bare_responder(port_queue: multiprocessing.Queue) -> None:
    """Parses every query with dnspython and answers a fixed A record."""

    class Fixed(asyncio.DatagramProtocol):
        def connection_made(self, transport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr) -> None:
            try:
                query = dns.message.from_wire(data)
            except Exception:
                return
            response = dns.message.make_response(query)
            response.answer.append(
                dns.rrset.from_text(query.question[0].name, 5, "IN", "A", "127.0.0.1")
            )
            self.transport.sendto(response.to_wire(), addr)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Fixed, local_addr=("127.0.0.1", 0))
        port_queue.put(transport.get_extra_info("sockname")[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


def queries(distinct: bool, seed: int = 7) -> list[bytes]:
    """Query packets (ID 0, set per send) for the cities' networks or for ``DISTINCT`` /24s."""
    if distinct:
        rng = random.Random(seed)
        networks = [
            f"{n >> 16}.{(n >> 8) & 255}.{n & 255}.0"
            for n in rng.sample(range(1 << 16, 224 << 16), DISTINCT)
        ]
    else:
        networks = SUBNETS
    packets = []
    for network in networks:
        query = dns.message.make_query(
            NAME, "A", use_edns=0, options=[dns.edns.ECSOption(network, 24)]
        )
        query.id = 0
        packets.append(query.to_wire())
    return packets


def load(server: tuple, seconds: float, inflight: int, distinct: bool, seed: int, out) -> None:
    """Throughput with ``inflight`` queries outstanding, then latency one query at a time."""
    packets = queries(distinct, seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect(server)
    sock.setblocking(False)
    sent: dict[int, float] = {}
    # One sequence numbers every query sent: its ID (mod 2**16) and which packet it is, so
    # the latency queries go on where the throughput ones stopped (with distinct subnets, each
    # still one the server has not answered).
    sequence = 0

    def send() -> None:
        nonlocal sequence
        sequence += 1
        query_id = sequence & 0xFFFF
        packet = packets[sequence % len(packets)]
        sock.send(query_id.to_bytes(2, "big") + packet[2:])
        sent[query_id] = time.perf_counter()

    answered = lost = 0
    for _ in range(inflight):
        send()
    started = time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready:
            while True:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                if sent.pop(int.from_bytes(reply[:2], "big"), None) is not None:
                    answered += 1
                    send()
        for query_id, at in list(sent.items()):
            if now - at > LOST_AFTER:
                del sent[query_id]
                lost += 1
                send()
    throughput = answered / (time.perf_counter() - started)
    # Drain what is still in flight before timing single queries.
    time.sleep(LOST_AFTER)
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
    sock.setblocking(True)
    sock.settimeout(LOST_AFTER)
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sequence += 1
        packet = (sequence & 0xFFFF).to_bytes(2, "big") + packets[sequence % len(packets)][2:]
        t0 = time.perf_counter()
        sock.send(packet)
        try:
            while sock.recv(4096)[:2] != packet[:2]:
                pass
        except TimeoutError:
            continue
        latencies.append(time.perf_counter() - t0)
    sock.close()
    latencies.sort()
    out.put(
        {
            "queries_per_second": round(throughput),
            "lost": lost,
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        }
    )


def measure(server: tuple, seconds: float, inflight: int, distinct=False, seed=7) -> dict:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    process = ctx.Process(target=load, args=(server, seconds, inflight, distinct, seed, out))
    process.start()
    result = out.get(timeout=seconds * 4 + 60)
    process.join()
    return result


def summary(rounds: list[dict]) -> dict:
    return {
        "queries_per_second": round(statistics.median(r["queries_per_second"] for r in rounds)),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 3),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 3),
        "lost": sum(r["lost"] for r in rounds),
        "queries_per_second_by_round": [r["queries_per_second"] for r in rounds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inflight", type=int, default=32)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    bare = ctx.Process(target=bare_responder, args=(ports,), daemon=True)
    bare.start()
    baseline_server = ("127.0.0.1", ports.get(timeout=30))
    os.environ["LATITUDE_COORDINATOR_DNS_RATE_LIMIT"] = "0"  # the coordinators inherit it
    try:
        with running_stack(tls=False) as stack:
            state = stack.state()
            coordinators = stack.coordinator_addresses(state)
            leader = asyncio.run(cluster_status(coordinators)).leader.address
            follower = next(
                name
                for name, address in zip(stack.topology.coordinators, coordinators, strict=True)
                if address != leader
            )
            host, _, port = stack.dns_address(state, follower).rpartition(":")
            target = (host, int(port))
            plan = ["bare", "kept", "cold"]
            rounds: dict[str, list[dict]] = {kind: [] for kind in plan}
            for i in range(args.rounds):
                for kind in plan if i % 2 == 0 else reversed(plan):
                    server = baseline_server if kind == "bare" else target
                    # Each cold round asks for /24s of its own: none answered before.
                    found = measure(server, args.seconds, args.inflight, kind == "cold", 7 + i)
                    rounds[kind].append(found)
            baseline, responder = summary(rounds["bare"]), summary(rounds["kept"])
            cold = summary(rounds["cold"])
    finally:
        bare.kill()
    ratio = responder["queries_per_second"] / baseline["queries_per_second"]
    cold_ratio = cold["queries_per_second"] / baseline["queries_per_second"]
    print(
        json.dumps(
            {
                "benchmark": "dns",
                "cpus": os.cpu_count(),
                "inflight": args.inflight,
                "rounds": args.rounds,
                "bare_dnspython_fixed_record": baseline,
                "dns_one_coordinator": responder,
                f"dns_one_coordinator_{DISTINCT}_distinct_subnets": cold,
                "throughput_ratio_dns_vs_bare": round(ratio, 3),
                "throughput_ratio_cold_vs_bare": round(cold_ratio, 3),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "targets": {"throughput_ratio": 0.8},
                "targets_met": {"throughput_ratio": ratio >= 0.8},
            }
        )
    )


if __name__ == "__main__":
    main()
