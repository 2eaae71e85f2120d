"""The leader's routing engine: region availability and weights, the latency figures, and
the routing table built from them (the decisions themselves are ``latitude.routing``)."""

from coordinator.routing.latency import PrefixLatencies, latency_model
from coordinator.routing.table import build_table, tables_differ
from coordinator.routing.weights import FailbackRamp

__all__ = ["FailbackRamp", "PrefixLatencies", "build_table", "latency_model", "tables_differ"]
