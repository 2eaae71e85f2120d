"""The values a leader may tell its agents (Welcome), and no others.

Agents refuse a Welcome outside these ranges (agent.trust: a stranger's Welcome must not stop a
primary from fencing, or make it fence at once); coordinators refuse to start configured
outside them, so that no real leader is ever refused.
"""

from __future__ import annotations

# (lowest, highest) seconds; unset (0) in a Welcome leaves the agent's own setting.
REPORT_INTERVAL = (0.01, 10.0)
FENCE_AFTER = (0.1, 120.0)
PEER_PROBE_INTERVAL = (0.1, 3600.0)
# 0 means 1.
MAX_ACK_EVERY = 4


def outside(name: str, value: float, bounds: tuple[float, float]) -> str | None:
    """'<name> <value> s is outside <low>..<high> s', or None within."""
    low, high = bounds
    if low <= value <= high:
        return None
    return f"{name} {value:g} s is outside {low:g}..{high:g} s"
