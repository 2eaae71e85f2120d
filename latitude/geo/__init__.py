"""Where a client is, for routing: IP and explicit locations, and distances between points."""
