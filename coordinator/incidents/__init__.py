"""Incidents: the event history correlated into one incident per cause (``correlate``), kept in
etcd by the leader (``keeper``), and delivered to webhooks (``dispatch`` decides, ``webhooks``
sends)."""
