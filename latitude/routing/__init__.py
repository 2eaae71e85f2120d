"""Routing decisions from a RoutingTable, for coordinators and the client library alike.

Depends only on ``latitude.*`` and the standard library, so that clients can import it.
"""

from latitude.routing.resolve import InvalidRequest, Resolver

__all__ = ["InvalidRequest", "Resolver"]
