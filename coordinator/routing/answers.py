"""The serialized Resolve answers a replica keeps for the table it serves, bounded in bytes.

A repeated request costs one dict lookup (``get``), so that is all the hot path does here. What
is kept is bounded three ways, because the request bytes are the key and a caller chooses them:

- a request longer than ``max_key_bytes`` is answered but never kept (an ordinary request is
  under 100 bytes; unknown fields can pad one to the message size limit);
- at most ``max_entries`` answers;
- at most ``max_bytes``, counting key, answer and a fixed overhead per entry, the oldest
  evicted first (kept order, not use order: a hit stays a plain lookup).

``clear`` empties it when the table changes: answers belong to one table version.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_KEY_BYTES = 512
MAX_ENTRIES = 8192
MAX_BYTES = 16 * 1024 * 1024
# What an entry costs beyond its key and answer: two bytes objects, a tuple and the dict slot.
ENTRY_OVERHEAD = 200


class AnswerCache:
    """Not thread-safe: one event loop serves Resolve."""

    def __init__(
        self,
        *,
        max_bytes: int = MAX_BYTES,
        max_entries: int = MAX_ENTRIES,
        max_key_bytes: int = MAX_KEY_BYTES,
    ) -> None:
        if max_bytes < 0 or max_entries < 0 or max_key_bytes < 0:
            raise ValueError("answer cache bounds must not be negative")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_key_bytes = max_key_bytes
        self._kept: OrderedDict[bytes, tuple] = OrderedDict()
        self._sizes: dict[bytes, int] = {}
        self.bytes = 0
        # The hot path: a bound method of the dict itself, no Python frame of ours.
        self.get = self._kept.get

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, key: bytes, value: tuple, size: int) -> bool:
        """Keep ``value`` (whose answer is ``size`` bytes) for ``key``; whether it was kept."""
        cost = len(key) + size + ENTRY_OVERHEAD
        if len(key) > self.max_key_bytes or cost > self.max_bytes or not self.max_entries:
            return False
        if key in self._kept:
            self._forget(key)
        while self._kept and (
            len(self._kept) >= self.max_entries or self.bytes + cost > self.max_bytes
        ):
            self._forget(next(iter(self._kept)))
        self._kept[key] = value
        self._sizes[key] = cost
        self.bytes += cost
        return True

    def clear(self) -> None:
        self._kept.clear()
        self._sizes.clear()
        self.bytes = 0

    def _forget(self, key: bytes) -> None:
        del self._kept[key]
        self.bytes -= self._sizes.pop(key)
