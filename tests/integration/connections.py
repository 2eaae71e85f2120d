"""What a test client sees when the database under it dies."""

import asyncpg

# A connection that dies mid-query can surface as any of these (asyncpg's InternalClientError
# when the failure interrupts its state machine).
CONNECTION_TROUBLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
