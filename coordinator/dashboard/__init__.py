"""The dashboard every coordinator serves on its HTTP listener: the regions, the leader, the
routing strategy, incidents, a running failover's steps and each region's recent history,
live, from any replica. ``install`` wires it onto a ``latitude.web.WebServer``'s app."""

from coordinator.dashboard.routes import install

__all__ = ["install"]
