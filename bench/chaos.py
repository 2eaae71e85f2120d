"""The partition scenarios of tests/chaos/test_partitions.py, with their figures.

Run (as root): .venv/bin/python bench/chaos.py [-k EXPRESSION]
Runs the scenarios (all, or those pytest's -k EXPRESSION selects) on one stack in network
namespaces of its own, and prints one JSON object per scenario: the longest time with no
commit acknowledged anywhere from the fault on (s), how often two databases acknowledged
commits within 100 ms (must be 0), acknowledged rows lost (beyond a failover's recorded
bound) and those within it, the time to converge after healing (s), the failovers started,
and the test's outcome (passed, failed, xfailed, xpassed: an xfail names the capability the
scenario waits for).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = (
    "scenario", "outcome", "write_unavailability_s", "two_writable_overlaps",
    "acknowledged", "acknowledged_lost", "lost_within_bound", "converge_s",
    "failovers_started", "notes",
)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-k", dest="select", default="", help="pytest -k expression")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        argv = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            str(ROOT / "tests/chaos/test_partitions.py"),
            *(["-k", args.select] if args.select else []),
        ]  # fmt: skip
        env = dict(os.environ, LATITUDE_CHAOS_RESULTS=str(results))
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=sys.stderr, check=False)
        lines = results.read_text().splitlines() if results.exists() else []
    entries = [json.loads(line) for line in lines]
    # The conftest notes each test's outcome after the scenario noted its figures.
    seen = {e["outcome_of"]: e["outcome"] for e in entries if "outcome_of" in e}
    for result in entries:
        if "scenario" in result:
            result["outcome"] = seen.get(result.get("test", ""), "unknown")
            print(json.dumps({k: result.get(k) for k in FIELDS}))
    return 0 if done.returncode in (0, 1) else done.returncode


if __name__ == "__main__":
    sys.exit(main())
