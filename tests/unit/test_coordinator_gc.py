"""The coordinator settles its garbage collector once started (bench/ingest.py's CPU figure
depends on it). In a child process: the collector's settings are the whole process's."""

from __future__ import annotations

import subprocess
import sys

from coordinator.main import GC_YOUNG_THRESHOLD

_PROBE = """
import gc
from coordinator.main import settle_garbage_collection
default = gc.get_threshold()
settle_garbage_collection()
print(default[1:] == gc.get_threshold()[1:], gc.get_threshold()[0], gc.get_freeze_count() > 1000)
"""


def test_startup_objects_are_frozen_and_the_young_generation_collected_less_often():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["True", str(GC_YOUNG_THRESHOLD), "True"]
