"""Every read of one memory table family: a memory, its history, a user's memories, lists,
topics and per-user statistics."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from .counts import CountsAt
from .database import unavailable_as_error
from .family import DEFAULT_IDEMPOTENCY_TTL, Family, memory_from_row
from .model import HistoryEntry, Memory, MemoryQuery, Page, UserStats, unique_topics
from .queries import EXACT_FILTERS, INDEXED, LIKE, ListStatements, search_table
from .schema import MemoryTables
from .vectors import Embedder, Filters, SemanticSearchUnavailable, fused

# The search indexes work on trigrams: shorter needles are matched by scanning.
TRIGRAM = 3
# The question "how many memories are there", as RememberedCounts keys it: a list with no filter.
EVERY_MEMORY = ("every memory",)


class MemoryReads(Family):
    def __init__(self, engine: sa.Engine, tables: MemoryTables,
                 idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL, embedder: Embedder | None = None):
        super().__init__(engine, tables, idempotency_ttl, embedder)
        memories, topics = tables.memories, tables.topics
        user_stats, history = tables.user_stats, tables.history
        self._search = search_table(tables.name, engine.dialect.name)
        self._lists = ListStatements(tables, self._memory_columns, self._search)
        self._count_all = self._lists.count_all

        # A memory with its topics, one row per topic, in one statement: one snapshot, so the
        # text and the topics are always of the same version, without a transaction around them.
        self._select_with_topics = (
            sa.select(*self._memory_columns, topics.c.topic)
            .select_from(memories.outerjoin(topics, topics.c.memory_id == memories.c.memory_id))
            .where(memories.c.memory_id == sa.bindparam("memory_id"))
            .order_by(topics.c.position)
        )
        self._select_with_topics_of_user = self._select_with_topics.where(
            memories.c.user_id == sa.bindparam("user_id"))
        self._select_history = (
            sa.select(history.c.version, history.c.event, history.c.memory, history.c.topics,
                      history.c.user_id, history.c.agent_id, history.c.team_id, history.c.changed_at)
            .where(history.c.memory_id == sa.bindparam("memory_id"))
            .order_by(history.c.version)
        )
        self._select_history_of_user = self._select_history.where(
            history.c.user_id == sa.bindparam("user_id"))

        self._distinct_topics = _loose_index_scan(topics.c.topic, ())
        self._distinct_topics_of_user = _loose_index_scan(
            topics.c.topic, (topics.c.user_id == sa.bindparam("user_id"),))

        self._count_of_user = (sa.select(user_stats.c.total_memories)
                               .where(user_stats.c.user_id == sa.bindparam("user_id")))
        self._stats_page = (
            sa.select(user_stats.c.user_id, user_stats.c.total_memories,
                      user_stats.c.last_memory_updated_at,
                      self._changes_so_far.scalar_subquery().label("changes"))
            .order_by(user_stats.c.last_memory_updated_at.desc(), user_stats.c.user_id.asc())
            .limit(sa.bindparam("limit"))
            .offset(sa.bindparam("offset"))
        )
        self._stats_page_of_user = self._stats_page.where(user_stats.c.user_id == sa.bindparam("user_id"))
        self._count_users = sa.select(sa.func.count()).select_from(user_stats)
        self._count_users_with_id = self._count_users.where(user_stats.c.user_id == sa.bindparam("user_id"))

    @unavailable_as_error(read=True)
    def get(self, memory_id: str, user_id: str | None = None) -> Memory | None:
        with self._single_statement.connect() as conn:
            if user_id is None:
                rows = conn.execute(self._select_with_topics, {"memory_id": memory_id}).all()
            else:
                rows = conn.execute(self._select_with_topics_of_user,
                                    {"memory_id": memory_id, "user_id": user_id}).all()
        if not rows:
            return None
        return memory_from_row(rows[0], [row[7] for row in rows if row[7] is not None])

    @unavailable_as_error(read=True)
    def history(self, memory_id: str, user_id: str | None = None) -> list[HistoryEntry]:
        """Every recorded version of the memory, oldest first (only ``user_id``'s, if given);
        empty if there is none."""
        with self._single_statement.connect() as conn:
            if user_id is None:
                rows = conn.execute(self._select_history, {"memory_id": memory_id}).all()
            else:
                rows = conn.execute(self._select_history_of_user,
                                    {"memory_id": memory_id, "user_id": user_id}).all()
        return [HistoryEntry(*row) for row in rows]

    @unavailable_as_error(read=True)
    def of_user(self, user_id: str) -> list[Memory]:
        """All of ``user_id``'s memories, oldest first."""
        m = self.tables.memories
        # One snapshot for the memories and their topics, so each reads as one version.
        with self._one_snapshot.begin() as conn:
            rows = conn.execute(sa.select(*self._memory_columns).where(m.c.user_id == user_id)
                                .order_by(m.c.created_at, m.c.memory_id)).all()
            return self._with_topics(conn, rows)

    @unavailable_as_error(read=True)
    def list(self, query: MemoryQuery) -> Page:
        started = time.perf_counter()
        if query.search_mode != "substring":
            return self._ranked(query, started)
        filters = tuple(name for name in EXACT_FILTERS if getattr(query, name) is not None)
        topics = unique_topics(query.topics)
        needle = query.search_content.casefold() if query.search_content else None
        offset = (query.page - 1) * query.limit
        parameters = ListStatements.parameters({name: getattr(query, name) for name in filters},
                                               topics, needle, query.limit, offset)

        with self._several_statements.begin() as conn:
            counts = self._counts.reading(conn)
            total = self._count(conn, counts, query, filters, topics, needle, parameters)
            items: list[Memory] = []
            if offset < total:
                if topics and not filters and not needle:
                    statement = self._lists.in_topic_order(len(topics), query.sort_by, query.sort_order)
                else:
                    walk = self._walk(conn, counts, query, bool(topics or needle), total, offset)
                    search = self._search_kind(needle, narrow=not walk)
                    statement = self._lists.page(filters, len(topics), search, walk, query.sort_by,
                                                 query.sort_order)
                items = self._with_topics(conn, conn.execute(statement, parameters).all())
        return Page(items, query.page, query.limit, total, _ms_since(started))

    def _ranked(self, query: MemoryQuery, started: float) -> Page:
        """A page of the memories that match the filters, ranked by ``search_content``: by
        meaning (semantic), or by meaning and words fused (hybrid); best first."""
        vectors = self.vectors
        with self._one_snapshot.begin() as conn:
            refusal = vectors.unavailable(conn)
        if refusal is not None:
            raise refusal
        question = query.search_content or ""
        try:
            # Outside any transaction: a remote model may take its time.
            embedded = vectors.embedder.embed([question])[0]
        except Exception as error:
            raise SemanticSearchUnavailable(
                "EMBEDDING_MODEL_UNAVAILABLE",
                f"the embedding model could not embed the question: {error}") from error
        filters = Filters(query.user_id, query.agent_id, query.team_id, tuple(unique_topics(query.topics)))
        offset = (query.page - 1) * query.limit
        with self._one_snapshot.begin() as conn:
            ranked = vectors.nearest(conn, embedded, filters)
            if query.search_mode == "hybrid":
                ranked = fused(ranked, vectors.by_words(conn, question, filters))
            chosen = ranked[offset:offset + query.limit]
            m = self.tables.memories
            rows = conn.execute(sa.select(*self._memory_columns).where(
                m.c.memory_id.in_([item.memory_id for item in chosen]))).all() if chosen else []
            found = {memory.memory_id: memory for memory in self._with_topics(conn, rows)}
        # A memory deleted between the ranking and the read is left out of the page.
        items = [(found[item.memory_id], item.score) for item in chosen if item.memory_id in found]
        return Page([memory for memory, _ in items], query.page, query.limit, len(ranked),
                    _ms_since(started), scores=[score for _, score in items])

    def _walk(self, conn: sa.Connection, counts: CountsAt, query: MemoryQuery, narrowed: bool,
              total: int, offset: int) -> bool:
        """Whether the page is found by walking the sort order's index, testing each memory.

        Two plans find the same rows. Walking the sort order's index and testing each row stops
        after ``offset + limit`` matches, so it wins when matches are common (a word in a third
        of all memories); starting from the topic or search index and sorting what it finds
        reads every match, so it wins when they are rare. The count, already known, says which.
        """
        walked = self._size(conn, counts, query.user_id) if narrowed else 0
        return (offset + query.limit) * walked <= total * total

    def _search_kind(self, needle: str | None, narrow: bool) -> str | None:
        """How a search for ``needle`` is matched (queries.LIKE or INDEXED); None without one.

        The search table's index serves needles of 3 characters or more.
        """
        if not needle:
            return None
        if narrow and len(needle) >= TRIGRAM:
            return INDEXED
        return LIKE

    def _size(self, conn: sa.Connection, counts: CountsAt, user_id: str | None) -> int:
        """How many memories the sort order's index walks through: the user's, or all."""
        if user_id is not None:
            return conn.execute(self._count_of_user, {"user_id": user_id}).scalar() or 0
        return counts.get(EVERY_MEMORY, lambda: conn.execute(self._count_all).scalar_one())

    @unavailable_as_error(read=True)
    def count(self) -> int:
        """How many memories the table holds, from the per-user summaries (plus the memories
        of no user), without reading the memories themselves."""
        with self._single_statement.connect() as conn:
            return conn.execute(self._count_all).scalar_one()

    @unavailable_as_error(read=True)
    def scan(self, after: str | None, limit: int) -> list[Memory]:
        """Up to ``limit`` memories with ids after ``after``, in memory_id order: one page of a
        walk over the whole table that never holds more than a page, and stays correct (by keyset,
        not offset) while other writers insert or delete."""
        m = self.tables.memories
        statement = sa.select(*self._memory_columns).order_by(m.c.memory_id).limit(limit)
        if after is not None:
            statement = statement.where(m.c.memory_id > after)
        with self._one_snapshot.begin() as conn:
            return self._with_topics(conn, conn.execute(statement).all())

    def _count(self, conn: sa.Connection, counts: CountsAt, query: MemoryQuery, filters: tuple[str, ...],
               topics: list[str], needle: str | None, parameters: dict) -> int:
        """How many memories match: one user's from their summary row, anything else as
        remembered since the last write (see RememberedCounts) or counted now."""
        if not needle and not topics and filters == ("user_id",):
            return conn.execute(self._count_of_user, {"user_id": query.user_id}).scalar() or 0
        question = (query.user_id, query.agent_id, query.team_id, tuple(sorted(topics)), needle)
        statement = self._lists.count(filters, len(topics), self._search_kind(needle, narrow=True))
        return counts.get(question, lambda: conn.execute(statement, parameters).scalar_one())

    @unavailable_as_error(read=True)
    def topics(self, user_id: str | None = None) -> list[str]:
        with self._single_statement.connect() as conn:
            if user_id is None:
                topics = conn.execute(self._distinct_topics).scalars()
            else:
                topics = conn.execute(self._distinct_topics_of_user, {"user_id": user_id}).scalars()
            # Sorted here, by code point, so the order is the same on every backend and
            # collation.
            return sorted(topics)

    @unavailable_as_error(read=True)
    def user_stats(self, *, limit: int, page: int, user_id: str | None = None) -> Page:
        started = time.perf_counter()
        parameters = {"user_id": user_id, "limit": limit, "offset": (page - 1) * limit}
        page_of, count = ((self._stats_page, self._count_users) if user_id is None
                          else (self._stats_page_of_user, self._count_users_with_id))
        # The page and the change counter in one statement, with no transaction around it; the
        # number of users is then remembered (see RememberedCounts), so counting them, which
        # reads every summary row, happens once per write, not once per request.
        with self._single_statement.connect() as conn:
            rows = conn.execute(page_of, parameters).all()
            counts = self._counts.reading(conn, int(rows[0][3]) if rows else None)
            total = counts.get(("user_stats", user_id), lambda: conn.execute(count, parameters).scalar_one())
        return Page([UserStats(*row[:3]) for row in rows], page, limit, total, _ms_since(started))


def _loose_index_scan(column: sa.Column, conditions: tuple) -> sa.Select:
    """The distinct values of an indexed column, one index seek per value.

    A plain DISTINCT reads every row of the index; this walks from each value straight to the
    next greater one, so its cost follows the number of distinct values (a few hundred topics)
    rather than the number of rows (every topic of every memory).
    """
    walk = sa.select(sa.func.min(column).label("value")).where(*conditions).cte("walk", recursive=True)
    following = sa.select(sa.func.min(column)).where(*conditions, column > walk.c.value).scalar_subquery()
    walk = walk.union_all(sa.select(following).where(walk.c.value.is_not(None)))
    return sa.select(walk.c.value).where(walk.c.value.is_not(None))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
