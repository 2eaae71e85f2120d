"""Time from a region's failure to UNHEALTHY in the cluster status, on the real stack.

Run: .venv/bin/python bench/detection.py [--trials 5]
Prints one JSON object. Two faults, each over --trials trials, alternating between the two
standby regions: "kill -9" (the region's agent and PostgreSQL killed) and "SIGSTOP" (the
agent frozen, its database still up). The clock starts when the signal is sent and stops when
GetStatus, asked of the coordinators every 20 ms, first shows the region UNHEALTHY. Between
trials the region is restored and must be HEALTHY again; a random pause spreads the faults
over the report interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import time

from latitude.admin_client import NoCoordinator, cluster_status
from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import common_pb2

REGIONS = ("eu-west-1", "ap-southeast-1")


async def state_of(stack: Stack, region: str) -> int | None:
    try:
        view = await cluster_status(stack.coordinator_addresses(stack.state()), 1.0)
    except NoCoordinator:
        return None
    return next((r.state for r in view.regions if r.region == region), None)


async def wait_state(stack: Stack, region: str, state: int, timeout: float) -> float:
    started = time.perf_counter()
    while await state_of(stack, region) != state:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{region} did not reach {common_pb2.RegionState.Name(state)}")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def trial(stack: Stack, fault: str, region: str) -> float:
    await wait_state(stack, region, common_pb2.REGION_STATE_HEALTHY, 30)
    await asyncio.sleep(random.uniform(1.0, 1.5))
    agent = stack.state().processes[f"agent-{region}"]
    started = time.perf_counter()
    if fault == "kill -9":
        os.kill(agent.pid, signal.SIGKILL)
        await stack.kill(f"postgres-{region}")
    else:
        os.kill(agent.pid, signal.SIGSTOP)
    try:
        detected = await wait_state(stack, region, common_pb2.REGION_STATE_UNHEALTHY, 15)
    finally:
        if fault == "SIGSTOP":
            os.kill(agent.pid, signal.SIGCONT)
        else:
            await stack.up()
    return detected - started


def summary(samples: list[float]) -> dict:
    return {
        "trials": len(samples),
        "seconds": [round(s, 3) for s in samples],
        "p50_seconds": round(statistics.median(samples), 3),
        "max_seconds": round(max(samples), 3),
    }


async def measure(stack: Stack, trials: int) -> dict:
    results = {}
    for fault in ("kill -9", "SIGSTOP"):
        samples = [await trial(stack, fault, REGIONS[i % 2]) for i in range(trials)]
        results[fault] = summary(samples)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with running_stack() as stack:
        results = asyncio.run(measure(stack, args.trials))
    print(
        json.dumps(
            {
                "benchmark": "detection",
                "what": "fault -> region UNHEALTHY in GetStatus (report interval 0.5 s, "
                "suspect after 1.5 s)",
                "target": "p50 <= 2.0 s, max <= 3.0 s",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
