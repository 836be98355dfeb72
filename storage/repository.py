"""MemoryRepository: every read and write of one memory table family.

Its reads are in storage/reads.py, its writes in storage/writes.py, each beside the statements
it runs (built once, when the repository is made); what both share, in storage/family.py.
"""

from __future__ import annotations

from .database import after_bulk_load, unavailable_as_error
from .reads import MemoryReads
from .writes import MemoryWrites


class MemoryRepository(MemoryReads, MemoryWrites):
    """The memories of one table family: ``MemoryRepository(engine, tables, idempotency_ttl)``."""

    @unavailable_as_error
    def embedding_backlog(self) -> int:
        """How many memories wait for their embedding."""
        return self.vectors.backlog()

    @unavailable_as_error
    def embed_backlog(self, limit: int = 64) -> int:
        """Embed up to ``limit`` waiting memories; how many were embedded. The embedding
        model's own errors propagate."""
        return self.vectors.embed_queued(limit)

    def reindex(self, dimension: int, progress=None, batch: int = 256) -> int:
        """Re-embed the family with this repository's model (see VectorStore.reindex)."""
        return unavailable_as_error(self.vectors.reindex)(dimension, progress, batch)

    @unavailable_as_error
    def refresh_statistics(self) -> None:
        """Let the query planner see the tables as they are now (see database.after_bulk_load).

        After a bulk load its statistics still describe the table before it: PostgreSQL then
        plans for a small table (a sort of every search match instead of a walk down the
        index, for one) until autovacuum catches up.
        """
        tables = self.tables
        # The search table too: a plain table on PostgreSQL; on SQLite, ANALYZE passes over it.
        names = [table.name for table in (tables.memories, tables.topics, tables.user_stats, tables.history)]
        after_bulk_load(self._engine, [*names, f"{tables.name}_search"], self._writing)
