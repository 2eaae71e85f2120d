"""A Verify request's settings, with its defaults and bounds; bad input names the field."""

from __future__ import annotations

import re
from dataclasses import dataclass

from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2

MAX_RANGES_PER_CALL = 256  # agent.verify_service.MAX_RANGES
_TABLE = re.compile(r"^[^.\s]+\.[^.\s]+$")


class InvalidVerify(LatitudeError):
    """A Verify request that cannot be carried out as asked."""


@dataclass(frozen=True, slots=True)
class VerifySettings:
    tables: tuple[tuple[str, str], ...] = ()  # (schema, name); empty: every user table
    rows_per_range: int = 1000
    replay_wait: float = 30.0
    ranges_per_call: int = 32
    attempts: int = 3
    max_rows_per_second: float = 0.0  # 0: unpaced
    # Mismatching ranges narrowed to rows, per table; rows listed per range.
    narrowed_ranges: int = 20
    listed_rows: int = 100
    row_limit: int = 200  # a range this small is compared row by row
    fanout: int = 8  # pieces a larger mismatching range is cut into, per step

    @classmethod
    def from_request(cls, request: admin_pb2.VerifyRequest) -> VerifySettings:
        tables = []
        for i, name in enumerate(request.tables):
            if not _TABLE.match(name):
                raise InvalidVerify(f"tables[{i}]: expected schema.name, got {name!r}")
            schema, _, table = name.partition(".")
            tables.append((schema, table))
        if request.rows_per_range and request.rows_per_range < 10:
            raise InvalidVerify(
                f"rows_per_range: at least 10 (0 for 1000), got {request.rows_per_range}"
            )
        if request.ranges_per_call > MAX_RANGES_PER_CALL:
            raise InvalidVerify(
                f"ranges_per_call: at most {MAX_RANGES_PER_CALL}, got {request.ranges_per_call}"
            )
        if not request.replay_wait_seconds >= 0:
            raise InvalidVerify(
                f"replay_wait_seconds: must not be negative, got {request.replay_wait_seconds}"
            )
        if not request.max_rows_per_second >= 0:
            raise InvalidVerify(
                f"max_rows_per_second: must not be negative, got {request.max_rows_per_second}"
            )
        if request.attempts > 20:
            raise InvalidVerify(f"attempts: at most 20, got {request.attempts}")
        defaults = cls()
        return cls(
            tables=tuple(tables),
            rows_per_range=request.rows_per_range or defaults.rows_per_range,
            replay_wait=request.replay_wait_seconds or defaults.replay_wait,
            ranges_per_call=request.ranges_per_call or defaults.ranges_per_call,
            attempts=request.attempts or defaults.attempts,
            max_rows_per_second=request.max_rows_per_second,
        )
