"""The SQL of the data-level consistency check, built for one table from its own catalog.

Checksums are computed inside PostgreSQL so that rows are compared without being shipped. A
row's text form (``t::text``: every column, in the table's order) is hashed twice by
PostgreSQL's own 64-bit hash, ``hashtextextended``, with seeds 0 and 1: a 128-bit row hash. A
range's checksum is the count of its rows and the two 64-bit hashes, each summed over the
range as an exact numeric (``sum(bigint)``). A sum is order-independent (the regions may read
in any physical order) and, unlike an xor, counts duplicate rows (which a table without a
primary key may hold). Ranges with different rows escape detection only when the row counts
match and both sums collide at once: about 2^-128 for accidental differences (a lost, stale or
corrupted row). The hash is not cryptographic: it guards against accidents of replication, not
against someone crafting rows to collide. It was chosen over md5 for speed: about three times
faster per row here, which is what keeps the check's cost to each database small. Rows are
compared one by one (``Rows``) by md5 of the same text form.

A row's text form depends on session settings (TimeZone, DateStyle, IntervalStyle,
extra_float_digits, bytea_output): every connection of the check sets the same ones
(``SESSION_SETTINGS``), so that equal rows hash equally in every region.

Keys travel as text, one string per key column, and are cast back to the column's type in SQL,
so that ranges compare by the key's own ordering (the primary key's btree index serves them).

Privileges: the catalog queries (TABLES, KEY_COLUMNS, TABLE_EXISTS, POSITION, TIMELINE) and
hashtextextended need none; reading the rows needs SELECT on every user table, which the
agents' role has through ``pg_read_all_data`` (read only; see latitude.stack.postgres). A table
it cannot read makes the call fail with the server's "permission denied".
"""

from __future__ import annotations

from dataclasses import dataclass

SESSION_SETTINGS = {
    "application_name": "latitude-verify",
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}

# User tables: ordinary permanent tables (unlogged ones are not replicated, and a standby
# cannot read them) outside PostgreSQL's schemas and latitude's own (its heartbeat changes
# every interval by design). Partitioned tables are compared through their partitions.
TABLES = r"""
SELECT n.nspname AS schema, c.relname AS name, c.reltuples AS estimated_rows,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                 FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS key_columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'latitude')
  AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2
"""

# One table's key columns with their types, in key order.
KEY_COLUMNS = """
SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::regclass AND i.indisprimary
ORDER BY k.ord
"""

TABLE_EXISTS = """
SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL
"""

# Where the database stands: a standby's replayed position, a primary's current one.
POSITION = """
SELECT pg_is_in_recovery() AS standby,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
             ELSE pg_current_wal_lsn() END) - '0/0' AS lsn
"""
# The timeline the server is on: a primary's from the WAL it writes (its control file lags
# until the first checkpoint after a promotion), a standby's from its last checkpoint.
TIMELINE = """
SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END
"""

_SUMS = (
    "coalesce(sum(hashtextextended(r, 0)), 0)::text"
    " || ':' || coalesce(sum(hashtextextended(r, 1)), 0)::text"
)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class KeyColumn:
    name: str
    type: str  # format_type(): a type name the server parses back


@dataclass(frozen=True, slots=True)
class TableSql:
    """The statements for one table. Parameters: the range's bounds, as text, ``after``'s
    values then ``upto``'s, each present only when the range has that bound."""

    schema: str
    name: str
    key: tuple[KeyColumn, ...]

    @property
    def relation(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    def _where(self, has_after: bool, has_upto: bool) -> str:
        if not self.key:
            return "true"
        columns = ", ".join(quote_ident(c.name) for c in self.key)
        conditions, n = [], 1
        for present, op in ((has_after, ">"), (has_upto, "<=")):
            if present:
                params = ", ".join(f"${n + i}::text::{c.type}" for i, c in enumerate(self.key))
                n += len(self.key)
                conditions.append(f"ROW({columns}) {op} ROW({params})")
        return " AND ".join(conditions) or "true"

    def _key_text(self) -> str:
        return "ARRAY[" + ", ".join(f"{quote_ident(c.name)}::text" for c in self.key) + "]"

    def _order(self) -> str:
        return ", ".join(quote_ident(c.name) for c in self.key)

    def checksum(self, has_after: bool, has_upto: bool) -> str:
        return (
            f"SELECT count(*) AS rows, {_SUMS} AS digest FROM "
            f"(SELECT t::text AS r FROM {self.relation} AS t "
            f"WHERE {self._where(has_after, has_upto)}) AS s"
        )

    def bounds(self, has_after: bool, has_upto: bool) -> str:
        """Every n-th key of the range (n and the limit: the last two parameters)."""
        n = 1 + len(self.key) * (has_after + has_upto)
        return (
            f"SELECT k FROM (SELECT {self._key_text()} AS k, "
            f"row_number() OVER (ORDER BY {self._order()}) AS rn FROM {self.relation} "
            f"WHERE {self._where(has_after, has_upto)}) AS s "
            f"WHERE rn % ${n} = 0 ORDER BY rn LIMIT ${n + 1}"
        )

    def rows(self, has_after: bool, has_upto: bool) -> str:
        """The range's rows as (key, md5), in key order (the limit: the last parameter)."""
        n = 1 + len(self.key) * (has_after + has_upto)
        key = self._key_text() if self.key else "ARRAY[]::text[]"
        order = f" ORDER BY {self._order()}" if self.key else ""
        return (
            f"SELECT {key} AS k, md5(t::text) AS h FROM {self.relation} AS t "
            f"WHERE {self._where(has_after, has_upto)}{order} LIMIT ${n}"
        )
