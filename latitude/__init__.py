"""latitude: a multi-region control plane (routing, failure detection, PostgreSQL failover)."""

__version__ = "0.1.0"
