"""Country centres, for clients that IP geolocation places only to a country.

The table is ``country_centroids.csv`` beside this module (see ``_make_centroids.py`` for where
the numbers come from); it is read once, on the first lookup.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class CountryCentroid:
    code: str
    latitude: float
    longitude: float
    name: str


@functools.cache
def _centroids() -> dict[str, CountryCentroid]:
    text = resources.files(__package__).joinpath("country_centroids.csv").read_text("utf-8")
    lines = (line for line in text.splitlines() if not line.startswith("#"))
    return {
        row["iso2"]: CountryCentroid(
            row["iso2"], float(row["latitude"]), float(row["longitude"]), row["name"]
        )
        for row in csv.DictReader(lines)
    }


def country_centroid(code: str) -> CountryCentroid | None:
    """The centre of the country with this ISO 3166-1 alpha-2 code, or None if unknown."""
    return _centroids().get(code)


def country_codes() -> frozenset[str]:
    """Every country code that has a centre."""
    return frozenset(_centroids())
