"""latitude.geo: distances, and locating clients through real iptocc data and real .mmdb files."""

from __future__ import annotations

import ipaddress
import math
import random
from pathlib import Path

import iptocc
import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from latitude.errors import ConfigError, LatitudeError
from latitude.geo import (
    InvalidLocation,
    Located,
    Locator,
    great_circle_km,
    network_prefix,
    validate_location,
)
from latitude.geo.centroids import country_centroid, country_codes
from latitude.v1 import routing_pb2

EXPLICIT = routing_pb2.LOCATION_SOURCE_EXPLICIT
OVERRIDE = routing_pb2.LOCATION_SOURCE_OVERRIDE
IP_CITY = routing_pb2.LOCATION_SOURCE_IP_CITY
IP_COUNTRY = routing_pb2.LOCATION_SOURCE_IP_COUNTRY
DEFAULT = routing_pb2.LOCATION_SOURCE_DEFAULT

ASHBURN = (39.04, -77.49)
NEW_YORK = (40.7128, -74.0060)
LONDON = (51.5074, -0.1278)


@pytest.fixture
def locator():
    with Locator(default=ASHBURN) as locator:
        yield locator


# --- distance -----------------------------------------------------------------------------


def test_new_york_to_london_is_about_5570_km():
    assert great_circle_km(*NEW_YORK, *LONDON) == pytest.approx(5570, rel=0.01)
    assert great_circle_km(*LONDON, *NEW_YORK) == great_circle_km(*NEW_YORK, *LONDON)


def test_antipodes_are_half_the_circumference_apart():
    half = math.pi * 6371.0088
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(half)
    assert great_circle_km(90, 0, -90, 0) == pytest.approx(half)
    assert great_circle_km(-33.87, 151.21, 33.87, -28.79) == pytest.approx(half)


def test_same_point_is_zero_and_the_antimeridian_is_crossed_the_short_way():
    assert great_circle_km(*LONDON, *LONDON) == 0.0
    assert great_circle_km(0, 179.5, 0, -179.5) == pytest.approx(111.2, rel=0.01)


# --- explicit locations and validation ------------------------------------------------------


def test_explicit_location_wins_over_every_ip_source(tmp_path):
    path = write_city_db(tmp_path, {"81.2.69.0/24": city_record("London", "GB", *LONDON)})
    with Locator(ASHBURN, {"81.2.69.0/24": NEW_YORK}, path) as locator:
        located = locator.locate("81.2.69.160", latitude=1.5, longitude=-2)
    assert located == Located(1.5, -2.0, EXPLICIT, "explicit location", "81.2.69.0/24")
    assert isinstance(located.longitude, float)


def test_explicit_location_without_ip_has_no_prefix(locator):
    assert locator.locate(latitude=-90, longitude=180).network_prefix == ""
    assert locator.locate("", latitude=0, longitude=0).source == EXPLICIT


@pytest.mark.parametrize(
    ("latitude", "longitude", "field"),
    [
        (90.5, 0, "location.latitude"),
        (-91, 0, "location.latitude"),
        (math.nan, 0, "location.latitude"),
        (math.inf, 0, "location.latitude"),
        (0, 180.01, "location.longitude"),
        (0, -math.inf, "location.longitude"),
        (0, math.nan, "location.longitude"),
        (10, None, "location.longitude"),
        (None, 10, "location.latitude"),
        ("51.5", 0, "location.latitude"),
        (True, 0, "location.latitude"),
    ],
)
def test_bad_locations_name_the_field(locator, latitude, longitude, field):
    with pytest.raises(InvalidLocation) as caught:
        locator.locate("8.8.8.8", latitude=latitude, longitude=longitude)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, LatitudeError)
    with pytest.raises(InvalidLocation):
        validate_location(latitude, longitude)


def test_validate_location_returns_floats():
    assert validate_location(51, -1) == (51.0, -1.0)
    assert validate_location(-90, 180) == (-90.0, 180.0)


@pytest.mark.parametrize(
    "ip", ["8.8.8", "256.1.1.1", "8.8.8.8/24", " 8.8.8.8", "example.com", ":::1"]
)
def test_unparsable_ip_names_client_ip(locator, ip):
    with pytest.raises(InvalidLocation) as caught:
        locator.locate(ip)
    assert caught.value.field == "client_ip"
    with pytest.raises(InvalidLocation) as caught:
        locator.locate(ip, latitude=1, longitude=1)
    assert caught.value.field == "client_ip"
    with pytest.raises(InvalidLocation):
        network_prefix(ip)


def test_an_unparsable_ip_is_quoted_in_part(locator):
    """A refusal quoting 70,000 characters would never reach a gRPC client."""
    with pytest.raises(InvalidLocation) as caught:
        locator.locate("8" * 70_000)
    assert len(str(caught.value)) < 200
    assert str(caught.value).endswith("8888'...")


# --- overrides and addresses that are not public ---------------------------------------------


def test_most_specific_override_wins_and_beats_the_private_default():
    overrides = {
        "10.0.0.0/8": (1.0, 1.0),
        "10.1.0.0/16": (2.0, 2.0),
        "10.1.2.0/24": (3.0, 3.0),
        "81.2.69.160/32": (4.0, 4.0),
        "2001:db8::/32": (5.0, 5.0),
        "2001:db8:1::/48": (6.0, 6.0),
    }
    with Locator(ASHBURN, overrides) as locator:
        assert locator.locate("10.1.2.3") == Located(
            3.0, 3.0, OVERRIDE, "override 10.1.2.0/24", "10.1.2.0/24"
        )
        assert locator.locate("10.1.9.9").detail == "override 10.1.0.0/16"
        assert locator.locate("10.200.0.1").detail == "override 10.0.0.0/8"
        assert locator.locate("81.2.69.160").detail == "override 81.2.69.160/32"
        assert locator.locate("81.2.69.161").source == IP_COUNTRY
        assert locator.locate("2001:db8:1:2::1").detail == "override 2001:db8:1::/48"
        assert locator.locate("2001:db8:2::1").detail == "override 2001:db8::/32"
        assert locator.locate("::ffff:10.1.2.3").detail == "override 10.1.2.0/24"
        assert locator.locate("192.168.0.1").source == DEFAULT


@pytest.mark.parametrize(
    ("ip", "reason", "prefix"),
    [
        ("10.0.0.5", "private address 10.0.0.5", "10.0.0.0/24"),
        ("192.168.1.20", "private address 192.168.1.20", "192.168.1.0/24"),
        ("172.16.5.4", "private address 172.16.5.4", "172.16.5.0/24"),
        ("fd12:3456::1", "private address fd12:3456::1", "fd12:3456::/48"),
        ("127.0.0.1", "loopback address 127.0.0.1", "127.0.0.0/24"),
        ("::1", "loopback address ::1", "::/48"),
        ("169.254.10.1", "link-local address 169.254.10.1", "169.254.10.0/24"),
        ("fe80::1%eth0", "link-local address fe80::1", "fe80::/48"),
        ("224.0.0.251", "multicast address 224.0.0.251", "224.0.0.0/24"),
        ("ff02::1", "multicast address ff02::1", "ff02::/48"),
        ("240.0.0.1", "reserved address 240.0.0.1", "240.0.0.0/24"),
        ("0.0.0.0", "unspecified address 0.0.0.0", "0.0.0.0/24"),
        ("::", "unspecified address ::", "::/48"),
        ("100.64.1.1", "non-global address 100.64.1.1", "100.64.1.0/24"),
    ],
)
def test_addresses_that_are_not_public_get_the_default_with_the_reason(locator, ip, reason, prefix):
    assert locator.locate(ip) == Located(*ASHBURN, DEFAULT, f"default ({reason})", prefix)


def test_no_ip_gets_the_default(locator):
    expected = Located(*ASHBURN, DEFAULT, "default (no client IP)", "")
    assert locator.locate() == expected
    assert locator.locate("") == expected


# --- IP-to-country through iptocc -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "country", "prefix"),
    [
        ("81.2.69.160", "GB", "81.2.69.0/24"),
        ("8.8.8.8", "US", "8.8.8.0/24"),
        ("133.11.0.1", "JP", "133.11.0.0/24"),  # University of Tokyo
        ("193.99.144.80", "DE", "193.99.144.0/24"),  # heise online
        ("165.21.83.88", "SG", "165.21.83.0/24"),  # SingNet
        ("139.130.4.5", "AU", "139.130.4.0/24"),  # Telstra
        ("::ffff:8.8.8.8", "US", "8.8.8.0/24"),
        ("2001:4860:4860::8888", "US", "2001:4860:4860::/48"),  # Google
        ("2001:200::1", "JP", "2001:200::/48"),  # WIDE project
        ("2a02:2e0:3fe:1001:302::", "DE", "2a02:2e0:3fe::/48"),  # heise online
        ("2001:c10::1", "SG", "2001:c10::/48"),
        ("2001:8000::1", "AU", "2001:8000::/48"),  # Telstra
    ],
)
def test_public_ips_are_placed_at_their_countrys_centre(locator, ip, country, prefix):
    centroid = country_centroid(country)
    assert centroid is not None
    assert locator.locate(ip) == Located(
        centroid.latitude, centroid.longitude, IP_COUNTRY, f"{country} (ip-country)", prefix
    )


def test_an_ip_iptocc_does_not_know_gets_the_default(locator):
    # Global unicast space that IANA has not handed to any registry.
    for ip in ("3000::1", "2e00::1"):
        assert iptocc.country_code(ip) is None
        located = locator.locate(ip)
        assert (located.source, located.latitude, located.longitude) == (DEFAULT, *ASHBURN)
        assert located.detail == f"default (no country known for {ip})"


def test_iptoccs_non_country_eu_gets_the_default(locator):
    assert iptocc.country_code("138.199.64.1") == "EU"
    located = locator.locate("138.199.64.1")
    assert (located.source, located.latitude, located.longitude) == (DEFAULT, *ASHBURN)
    assert "EU" in located.detail


def test_results_are_cached_by_ip(locator):
    first = locator.locate("81.2.69.160")
    assert locator.locate("81.2.69.160") is first


# --- the centroid table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "south", "north", "west", "east"),
    [
        ("US", 24.5, 49.4, -125.0, -66.9),  # the contiguous states
        ("GB", 49.9, 58.7, -8.2, 1.8),  # Great Britain
        ("SG", 1.2, 1.5, 103.6, 104.1),
        ("JP", 30.0, 45.6, 129.0, 146.0),  # Honshu and its neighbours
        ("DE", 47.3, 55.1, 5.9, 15.0),
        ("AU", -39.2, -10.7, 113.3, 153.6),
    ],
)
def test_country_centres_lie_inside_their_country(code, south, north, west, east):
    centroid = country_centroid(code)
    assert centroid is not None
    assert south <= centroid.latitude <= north
    assert west <= centroid.longitude <= east


def test_singapore_centre_is_about_where_expected():
    centroid = country_centroid("SG")
    assert centroid is not None
    assert great_circle_km(centroid.latitude, centroid.longitude, 1.35, 103.8) < 5


def test_every_country_iptocc_returns_has_a_centre():
    # One address per IPv4 /20 finds all but a few of iptocc's ~240 codes in a third of a
    # second; the full check (every /24) is in latitude/geo/_make_centroids.py.
    sample = [
        f"{a}.{b}.{c}.1" for a in range(1, 224) for b in range(256) for c in range(0, 256, 16)
    ]
    returned = {code for code in iptocc.country_code(sample) if code}
    assert len(returned) > 230
    assert returned - country_codes() <= {"EU"}
    assert len(country_codes()) >= 249


# --- MaxMind City databases -----------------------------------------------------------------


def city_record(city: str | None, country: str | None, latitude=None, longitude=None) -> dict:
    record: dict = {}
    if city is not None:
        record["city"] = {"geoname_id": 2643743, "names": {"en": city, "de": city}}
    if country is not None:
        record["country"] = {"iso_code": country, "names": {"en": country}}
    if latitude is not None:
        record["location"] = {
            "accuracy_radius": 20,
            "latitude": float(latitude),
            "longitude": float(longitude),
        }
    return record


def write_city_db(directory: Path, networks: dict[str, dict], ip_version: int = 6) -> str:
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type="GeoIP2-City",
        languages=["en"],
        description="latitude test city database",
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    path = directory / "GeoIP2-City-Test.mmdb"
    writer.to_db_file(str(path))
    return str(path)


@pytest.fixture
def city_db(tmp_path) -> str:
    path = write_city_db(
        tmp_path,
        {
            "81.2.69.0/24": city_record("London", "GB", 51.5142, -0.0931),
            "2a02:2e0::/32": city_record("Hannover", "DE", 52.3705, 9.7332),
            "193.99.144.0/24": city_record(None, "DE", 51.2993, 9.491),  # country only
            "8.8.4.0/24": city_record(None, None),  # nothing usable
        },
    )
    with maxminddb.open_database(path) as reader:  # the file really is a MaxMind DB
        assert reader.metadata().database_type == "GeoIP2-City"
        assert reader.get("81.2.69.160")["city"]["names"]["en"] == "London"
    return path


def test_city_database_places_ips_to_the_city(city_db):
    with Locator(ASHBURN, mmdb_path=city_db) as locator:
        assert locator.locate("81.2.69.160") == Located(
            51.5142, -0.0931, IP_CITY, "London, GB (ip-city)", "81.2.69.0/24"
        )
        assert locator.locate("2a02:2e0:3fe:1001:302::") == Located(
            52.3705, 9.7332, IP_CITY, "Hannover, DE (ip-city)", "2a02:2e0:3fe::/48"
        )


def test_a_country_only_record_gives_the_country_centre(city_db):
    germany = country_centroid("DE")
    assert germany is not None
    with Locator(ASHBURN, mmdb_path=city_db) as locator:
        located = locator.locate("193.99.144.80")
    assert (located.latitude, located.longitude) == (germany.latitude, germany.longitude)
    assert located.source == IP_COUNTRY
    assert located.detail == "DE (ip-country, GeoIP2-City)"


def test_ips_the_city_database_cannot_place_fall_through_to_iptocc(city_db):
    with Locator(ASHBURN, mmdb_path=city_db) as locator:
        assert locator.locate("8.8.4.4").detail == "US (ip-country)"  # empty record
        assert locator.locate("133.11.0.1").detail == "JP (ip-country)"  # no record
        assert locator.locate("2001:200::1").detail == "JP (ip-country)"


def test_ipv6_clients_against_an_ipv4_only_database_fall_through(tmp_path):
    path = write_city_db(
        tmp_path, {"81.2.69.0/24": city_record("London", "GB", *LONDON)}, ip_version=4
    )
    with Locator(ASHBURN, mmdb_path=path) as locator:
        assert locator.locate("81.2.69.160").source == IP_CITY
        assert locator.locate("2001:200::1").detail == "JP (ip-country)"


def test_overrides_and_private_addresses_come_before_the_city_database(tmp_path):
    path = write_city_db(
        tmp_path,
        {
            "81.2.69.0/24": city_record("London", "GB", *LONDON),
            "10.0.0.0/8": city_record("Nowhere", "GB", *LONDON),
        },
    )
    with Locator(ASHBURN, {"81.2.69.128/25": NEW_YORK}, path) as locator:
        assert locator.locate("81.2.69.160").detail == "override 81.2.69.128/25"
        assert locator.locate("81.2.69.1").detail == "London, GB (ip-city)"
        assert locator.locate("10.1.1.1").detail == "default (private address 10.1.1.1)"


def test_missing_city_database_is_a_config_error_naming_the_path(tmp_path):
    path = tmp_path / "GeoLite2-City.mmdb"
    with pytest.raises(ConfigError, match=f"{path}: no such file"):
        Locator(ASHBURN, mmdb_path=str(path))
    with pytest.raises(ConfigError, match=f"{tmp_path}: is a directory"):
        Locator(ASHBURN, mmdb_path=tmp_path)


@pytest.mark.parametrize(
    "content", [b"", b"not a database\n", b"\xab\xcd\xefMaxMind.com" + b"\0" * 8]
)
def test_garbage_city_database_is_a_config_error_naming_the_path(tmp_path, content):
    path = tmp_path / "GeoLite2-City.mmdb"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{path}: not a MaxMind DB"):
        Locator(ASHBURN, mmdb_path=str(path))


def test_a_database_without_locations_is_refused(tmp_path):
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
    writer.insert_network(IPSet(["8.8.8.0/24"]), {"autonomous_system_number": 15169})
    path = tmp_path / "GeoLite2-ASN.mmdb"
    writer.to_db_file(str(path))
    with pytest.raises(ConfigError, match="GeoLite2-ASN.*City"):
        Locator(ASHBURN, mmdb_path=str(path))


# --- configuration and lifecycle ------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"10.1.0.0/33": (1, 1)}, "10.1.0.0/33.*CIDR"),
        ({"not-a-prefix": (1, 1)}, "not-a-prefix.*CIDR"),
        ({"10.1.2.0/16": (1, 1)}, "10.1.2.0/16.*host bits.*10.1.0.0/16"),
        ({"10.1.0.0/16": (91, 1)}, r"10.1.0.0/16: latitude"),
        ({"10.1.0.0/16": (1, math.nan)}, r"10.1.0.0/16: longitude"),
        ({"10.1.0.0/16": (1,)}, r"10.1.0.0/16: expected \(latitude, longitude\)"),
        ({"2001:db8::/32": (1, 1), "2001:DB8::/32": (2, 2)}, "2001:DB8::/32.*same prefix"),
    ],
)
def test_bad_overrides_are_config_errors_naming_the_prefix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Locator(ASHBURN, overrides)


@pytest.mark.parametrize("default", [(90.1, 0), (0, -181), (math.inf, 0), (1, 2, 3), None])
def test_bad_default_location_is_a_config_error(default):
    with pytest.raises(ConfigError, match="default location"):
        Locator(default)


def test_network_prefix():
    assert network_prefix("203.0.113.77") == "203.0.113.0/24"
    assert network_prefix("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert network_prefix("::ffff:192.0.2.1") == "192.0.2.0/24"
    assert network_prefix("fe80::1%eth0") == "fe80::/48"
    assert network_prefix("") == ""
    assert network_prefix(None) == ""


def test_ipv6_prefixes_are_canonical_text():
    rng = random.Random(48)
    samples = ["::1", "0:0:1::", "2001:0:5::1", "0:1::", "ffff:ffff:ffff::"]
    for _ in range(2000):
        number = rng.getrandbits(128)
        for shift in (112, 96, 80):  # zero groups inside the /48 now and then
            if rng.random() < 0.4:
                number &= ~(0xFFFF << shift)
        samples.append(str(ipaddress.IPv6Address(number)))
    for text in samples:
        expected = ipaddress.ip_network(f"{text}/48", strict=False).compressed
        assert network_prefix(text) == expected


def test_closed_locator_refuses_to_locate(city_db):
    locator = Locator(ASHBURN, mmdb_path=city_db)
    assert locator.locate("81.2.69.160").source == IP_CITY
    locator.close()
    locator.close()
    with pytest.raises(LatitudeError, match="closed"):
        locator.locate("81.2.69.160")
