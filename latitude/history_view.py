"""``latitude history REGION``: a region's health over time as a compact timeline — spans of
one state and role, then sparklines of lag, weight and response time."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from latitude.enums import short_name
from latitude.errors import LatitudeError
from latitude.table import human_bytes, human_duration, render
from latitude.v1 import common_pb2, history_pb2

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BARS = "▁▂▃▄▅▆▇█"
MAX_SPANS = 30
SPARK_WIDTH = 60


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '2d', '1h30m' -> seconds; LatitudeError naming the problem."""
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)([smhd]))+", text.strip())
    if not parts:
        raise LatitudeError(
            f"--since: expected a duration such as 90s, 15m, 1h or 2d, got {text!r}"
        )
    total = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", text))
    if total <= 0:
        raise LatitudeError(f"--since: must be positive, got {text!r}")
    return total


@dataclass
class Span:
    start_ms: int
    end_ms: int  # the last sample's time plus its step
    state: int
    role: int
    samples: list[history_pb2.HealthSample]
    gap: bool = False


def spans(samples: Sequence[history_pb2.HealthSample], step: float) -> list[Span]:
    """Runs of one state and role; a silence longer than two steps is a span of its own."""
    out: list[Span] = []
    width = int(step * 1000)
    for sample in samples:
        last = out[-1] if out else None
        if last is not None and sample.at_ms - last.end_ms > width:
            out.append(Span(last.end_ms, sample.at_ms, 0, 0, [], gap=True))
            last = None
        if (
            last is not None
            and not last.gap
            and (last.state, last.role)
            == (
                sample.state,
                sample.role,
            )
        ):
            last.samples.append(sample)
            last.end_ms = sample.at_ms + width
        else:
            out.append(
                Span(sample.at_ms, sample.at_ms + width, sample.state, sample.role, [sample])
            )
    return out


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    if not values:
        return ""
    if len(values) > width:  # each character the largest value of its share
        per = len(values) / width
        values = [max(values[int(i * per) : max(int((i + 1) * per), int(i * per) + 1)])
                  for i in range(width)]  # fmt: skip
    top = max(values)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(
        _BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))] for v in values
    )


def _role(role: int) -> str:
    return "-" if role == 0 else short_name(common_pb2.DatabaseRole, role, lower=True)


def _clock(at_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at_ms / 1000))


def format_history(response: history_pb2.GetHistoryResponse, since: float) -> str:
    samples = list(response.samples)
    step = response.resolution_seconds or 5.0
    head = f"{response.region}: the last {human_duration(since)}"
    if not samples:
        return f"{head}: no samples (no leader has sampled this region in that time)"
    head += (
        f", {len(samples)} samples at {human_duration(step)} "
        f"({_clock(samples[0].at_ms)} to {_clock(samples[-1].at_ms)} UTC)"
    )
    runs = spans(samples, step)
    hidden = max(0, len(runs) - MAX_SPANS)
    rows = []
    for run in runs[hidden:]:
        if run.gap:
            rows.append([_clock(run.start_ms), _clock(run.end_ms),
                         human_duration((run.end_ms - run.start_ms) / 1000),
                         "(no samples)", "", "", "", ""])  # fmt: skip
            continue
        group = run.samples
        rows.append([
            _clock(run.start_ms),
            _clock(run.end_ms),
            human_duration((run.end_ms - run.start_ms) / 1000),
            short_name(common_pb2.RegionState, run.state),
            _role(run.role),
            human_bytes(max(s.replay_lag_bytes for s in group)),
            f"{sum(s.weight for s in group) / len(group):.2f}",
            f"{sum(s.response_time_seconds for s in group) / len(group) * 1000:.1f} ms",
        ])  # fmt: skip
    table = render(["FROM", "TO", "FOR", "STATE", "ROLE", "LAG (MAX)", "WEIGHT", "RESPONSE"], rows)
    if hidden:
        table = f"({hidden} earlier spans not shown; --since shorter, or --json)\n{table}"
    lag = [float(s.replay_lag_bytes) for s in samples]
    weight = [s.weight for s in samples]
    response_ms = [s.response_time_seconds * 1000 for s in samples]
    lines = [
        f"lag       {sparkline(lag)}  max {human_bytes(int(max(lag)))}",
        f"weight    {sparkline(weight)}  {min(weight):.2f} to {max(weight):.2f}",
        f"response  {sparkline(response_ms)}  max {max(response_ms):.1f} ms",
    ]
    return f"{head}\n\n{table}\n\n" + "\n".join(lines)


def history_json(response: history_pb2.GetHistoryResponse) -> dict:
    return {
        "region": response.region,
        "resolution_seconds": response.resolution_seconds,
        "samples": [
            {
                "at": s.at_ms / 1000,
                "state": short_name(common_pb2.RegionState, s.state, lower=True),
                "role": short_name(common_pb2.DatabaseRole, s.role, lower=True),
                "replay_lag_bytes": s.replay_lag_bytes,
                "replay_lag_seconds": s.replay_lag_seconds,
                "weight": s.weight,
                "response_time_seconds": s.response_time_seconds,
            }
            for s in response.samples
        ],
    }
