"""Totals that cost a count of many index entries, remembered until the next write."""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa

# Distinct counts a repository remembers between writes; past this, it starts again, so a
# stream of one-off searches cannot make it grow without bound.
REMEMBERED_COUNTS = 4096


class RememberedCounts:
    """Counts that read many index entries, remembered until the next write.

    A search for a common word has tens of thousands of matches, and counting them for its
    exact total is most of what the search costs; asking again before anything changed would
    count the same matches again. Every write transaction adds one to the family's change
    counter inside its own transaction (storage.writes: MemoryWrites._writing), so the counter's sum names
    a state of the data and only grows. A read takes the sum first, then counts: when the
    same question comes with the same sum, no write has committed since that sum was read,
    so the count made after it still holds. The sum is shared through the database, so a
    write in any process ends every process's remembered counts.
    """

    def __init__(self, changes_so_far: sa.Select, limit: int = REMEMBERED_COUNTS):
        self._changes_so_far = changes_so_far
        self._limit = limit
        # (sum of changes, {question: count}), replaced whole, never edited under a reader's
        # feet: a reader holding an older pair only ever adds a count that is true for it.
        self._remembered: tuple[int, dict] = (-1, {})
        self._lock = threading.Lock()

    def reading(self, conn: sa.Connection, changes: int | None = None) -> CountsAt:
        """The counts as a read on ``conn`` sees them; ``changes``: the counter's sum, if the
        read has already taken it (in a statement made before any count it asks for)."""
        return CountsAt(self, conn, changes)

    def changes(self, conn: sa.Connection) -> int:
        """The change counter's sum as ``conn`` sees it now."""
        return int(conn.execute(self._changes_so_far).scalar_one())

    def __len__(self) -> int:
        """How many counts are remembered now."""
        return len(self._remembered[1])

    def get_at(self, changes: int, question: tuple, count: Callable[[], int]) -> int:
        """The answer to ``question`` at the change counter's sum ``changes``: remembered, or
        ``count()`` (then remembered)."""
        seen, counts = self._remembered
        if seen == changes and question in counts:
            return counts[question]
        n = count()
        with self._lock:
            seen, counts = self._remembered
            if seen != changes or len(counts) >= self._limit:
                self._remembered = (changes, {question: n})
            else:
                counts[question] = n
        return n


class CountsAt:
    """RememberedCounts as one read sees them: the change counter is read once, at the
    first count the read asks for, before that count is made."""

    __slots__ = ("_counts", "_conn", "_changes")

    def __init__(self, counts: RememberedCounts, conn: sa.Connection, changes: int | None):
        self._counts, self._conn, self._changes = counts, conn, changes

    def get(self, question: tuple, count: Callable[[], int]) -> int:
        if self._changes is None:
            self._changes = self._counts.changes(self._conn)
        return self._counts.get_at(self._changes, question, count)

