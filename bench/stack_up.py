"""Time from `latitude up` to every region streaming, on a fresh stack: median of 3 runs.

Run: .venv/bin/python bench/stack_up.py [--trials N]
Prints one JSON object. Each trial starts a new stack in a temporary directory through the
same command a person runs, then takes it down again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from latitude.stack.harness import traversable_tempdir


def trial() -> float:
    parent = traversable_tempdir("latitude-bench-")
    directory = parent / "stack"
    command = [sys.executable, "-m", "latitude.cli"]
    try:
        start = time.perf_counter()
        subprocess.run([*command, "up", "--dir", str(directory)], check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        subprocess.run([*command, "down", "--dir", str(directory)], capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    seconds = [round(trial(), 3) for _ in range(args.trials)]
    print(
        json.dumps(
            {
                "benchmark": "stack_up",
                "what": "latitude up until every standby streams and the elected leader sees all "
                "three regions HEALTHY (etcd x3, PostgreSQL x3, coordinators x3, agents x3)",
                "trials": args.trials,
                "seconds": seconds,
                "median_seconds": round(statistics.median(seconds), 3),
                "target_seconds": 20.0,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
