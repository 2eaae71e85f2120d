"""Distance between two points on the Earth, for ranking regions by how far a client is."""

from math import asin, cos, radians, sin, sqrt

# The IUGG mean Earth radius. A sphere is within 0.5% of the ellipsoid everywhere, far finer
# than what a network's latency can tell apart.
EARTH_RADIUS_KM = 6371.0088


def great_circle_km(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Great-circle distance in km between two points given in degrees (haversine).

    Plain ``math`` on floats: the router calls this for every client and region.
    """
    phi1 = radians(a_lat)
    phi2 = radians(b_lat)
    half_dphi = (phi2 - phi1) * 0.5
    half_dlambda = radians(b_lon - a_lon) * 0.5
    h = sin(half_dphi) ** 2 + cos(phi1) * cos(phi2) * sin(half_dlambda) ** 2
    # Rounding can push h a hair past 1 for antipodes; asin would then raise.
    return 2.0 * EARTH_RADIUS_KM * asin(sqrt(min(h, 1.0)))
