"""The data-level consistency check (AdminService.Verify): pure decisions in ``keyspace``,
``judge`` and ``settings``; the orchestration over the agents' VerifyService in ``runner``."""
