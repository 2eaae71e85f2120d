"""Where a client is, for routing: explicit or IP-derived locations, and distances.

Imported by the client library and the coordinators alike, so it depends only on the standard
library, ``iptocc``, ``maxminddb`` and latitude's generated protobuf code.
"""

from latitude.geo.distance import EARTH_RADIUS_KM, great_circle_km
from latitude.geo.locate import Located, Locator, network_prefix
from latitude.geo.validation import InvalidLocation, validate_location

__all__ = [
    "EARTH_RADIUS_KM",
    "InvalidLocation",
    "Located",
    "Locator",
    "great_circle_km",
    "network_prefix",
    "validate_location",
]
