"""Checks on coordinates, shared by client requests (InvalidLocation) and configuration
(ConfigError)."""

from __future__ import annotations

import math

from latitude.errors import ConfigError, LatitudeError


class InvalidLocation(LatitudeError):
    """A client-supplied location or IP address is malformed; ``field`` names which one, so a
    gRPC handler can answer INVALID_ARGUMENT naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def coordinate_problem(value: object, name: str) -> str | None:
    """Why ``value`` is not a usable ``name`` ("latitude" or "longitude"), or None if it is."""
    limit = 90.0 if name == "latitude" else 180.0
    if value is None:
        return f"missing: a location needs both latitude and longitude, got no {name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of degrees, got {value!r}"
    if not math.isfinite(value) or not -limit <= value <= limit:
        return f"must be within [-{limit:g}, {limit:g}] degrees, got {value!r}"
    return None


def validate_location(latitude: float, longitude: float) -> tuple[float, float]:
    """(latitude, longitude) as floats; InvalidLocation naming ``location.latitude`` or
    ``location.longitude`` if either is missing, not finite or out of range."""
    for name, value in (("latitude", latitude), ("longitude", longitude)):
        problem = coordinate_problem(value, name)
        if problem is not None:
            raise InvalidLocation(f"location.{name}", problem)
    return float(latitude), float(longitude)


def config_location(value: object, where: str) -> tuple[float, float]:
    """A configured (latitude, longitude) pair; ConfigError naming ``where`` otherwise."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ConfigError(f"{where}: expected (latitude, longitude), got {value!r}")
    for name, coordinate in zip(("latitude", "longitude"), value, strict=True):
        problem = coordinate_problem(coordinate, name)
        if problem is not None:
            raise ConfigError(f"{where}: {name} {problem}")
    return float(value[0]), float(value[1])
