"""What the reads and the writes of one memory table family share: its engine as each kind of
transaction wants it, its tables, its remembered counts and its writers' locks, and how a
memory is read out of a row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa

from .counts import RememberedCounts
from .database import several_statement_reads, single_statement_reads, snapshot_reads
from .locks import UserLocks
from .model import Memory
from .schema import MemoryTables
from .vectors import Embedder, VectorStore

# How long an idempotency key is remembered unless the repository is told otherwise.
DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)


class Family:
    """One memory table family on one engine; storage.reads and storage.writes build on it."""

    def __init__(self, engine: sa.Engine, tables: MemoryTables,
                 idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL, embedder: Embedder | None = None):
        self._engine = engine
        self.tables = tables
        self.idempotency_ttl = idempotency_ttl
        self._single_statement = single_statement_reads(engine)
        self._several_statements = several_statement_reads(engine)
        self._one_snapshot = snapshot_reads(engine)
        self._locks = UserLocks(tables.name, engine.dialect.name)
        self.vectors = VectorStore(engine, tables, embedder, self._locks)
        memories, topics, changes = tables.memories, tables.topics, tables.changes
        self._changes_so_far = sa.select(sa.func.coalesce(sa.func.sum(changes.c.changes), 0))
        self._counts = RememberedCounts(self._changes_so_far)
        # The columns every statement that reads memories selects first, in this order
        # (memory_from_row reads them by position).
        self._memory_columns = (
            memories.c.memory_id, memories.c.memory, memories.c.user_id, memories.c.agent_id,
            memories.c.team_id, memories.c.created_at, memories.c.updated_at,
        )
        self._select_topics = (
            sa.select(topics.c.memory_id, topics.c.topic)
            .where(topics.c.memory_id.in_(sa.bindparam("memory_ids", expanding=True)))
            .order_by(topics.c.memory_id, topics.c.position)
        )

    def _with_topics(self, conn: sa.Connection, rows: Sequence[sa.Row]) -> list[Memory]:
        """The memories in ``rows`` (starting with the memory columns), with their topics."""
        topics: dict[str, list[str]] = {row[0]: [] for row in rows}
        if topics:
            for memory_id, topic in conn.execute(self._select_topics, {"memory_ids": list(topics)}).all():
                topics[memory_id].append(topic)
        return [memory_from_row(row, topics[row[0]]) for row in rows]


def memory_from_row(row: sa.Row, topics: list[str]) -> Memory:
    """The memory in a row that starts with Family._memory_columns.

    Read by position: looking a Row's values up by name costs more than running the statement
    that read them (docs/PERFORMANCE.md).
    """
    return Memory(row[0], row[1], topics, row[2], row[3], row[4], row[5], row[6])
