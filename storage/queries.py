"""The statements that page and count lists of memories, built once per shape and reused.

A list's statement depends on which filters it has and which plan serves it, never on the
values it is asked for: those travel as bound parameters. So each shape is built once, and
SQLAlchemy finds its compiled form without building the statement again and generating its
cache key, which cost a page of twenty as much CPU as running it (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from .schema import MemoryTables

# The filters a list can have that compare a column with one value, in the order they are given.
EXACT_FILTERS = ("user_id", "agent_id", "team_id")
# How a search is matched: by LIKE alone, or by LIKE with the search table narrowing the rows
# it looks at first (see MemoryRepository._search_kind).
LIKE, INDEXED = "like", "indexed"
# The escape character of every LIKE pattern, as in SQLAlchemy's autoescape.
ESCAPE = "/"
# Shapes remembered at most: one per combination of filters, number of topics, plan and
# order. A client sending ever more topics must not make the cache grow without bound.
SHAPES = 512


def like_pattern(needle: str) -> str:
    """The LIKE pattern that matches ``needle`` anywhere, its own ``%`` and ``_`` literal."""
    escaped = needle.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return f"%{escaped}%"


def search_phrase(needle: str) -> str:
    """SQLite FTS5's query for ``needle`` as one phrase: its trigrams side by side."""
    return '"' + needle.replace('"', '""') + '"'


def count_of_every_memory(tables: MemoryTables) -> sa.Select:
    """How many memories the family holds, from the per-user summaries (one row per user) and
    the memories of no user (through the user index), without reading the memories."""
    m, s = tables.memories, tables.user_stats
    return sa.select(
        sa.select(sa.func.coalesce(sa.func.sum(s.c.total_memories), 0)).scalar_subquery()
        + sa.select(sa.func.count()).select_from(m).where(m.c.user_id.is_(None)).scalar_subquery()
    )


def topic_parameter(position: int) -> str:
    return f"topic_{position}"


@dataclass(frozen=True)
class SearchTable:
    """A family's search table (schema._search_index): which memories' folded text holds the
    needle, by row id, and how many do."""

    rows: sa.Select
    count: sa.Select


def search_table(name: str, dialect: str) -> SearchTable:
    """The search table of family ``name`` on ``dialect``.

    SQLite's FTS5 table matches the needle's trigrams side by side as one phrase, which is
    exactly where the needle stands in the text; PostgreSQL's trigram index serves a LIKE over
    the table's copy of the text, re-checked row by row.
    """
    if dialect == "sqlite":
        table = sa.table(f"{name}_search", sa.column("rowid"), sa.column("memory_folded"))
        row, holds = table.c.rowid, table.c.memory_folded.match(sa.bindparam("phrase"))
    else:
        table = sa.table(f"{name}_search", sa.column("id"), sa.column("memory_folded"))
        row, holds = table.c.id, table.c.memory_folded.like(sa.bindparam("pattern"), escape=ESCAPE)
    return SearchTable(sa.select(row).where(holds),
                       sa.select(sa.func.count()).select_from(table).where(holds))


class ListStatements:
    """Page and count statements for lists of one memory table family, by shape.

    Their parameters: ``user_id``, ``agent_id``, ``team_id`` (the filters present), ``topic_0``,
    ``topic_1``, ... (the topics, in order), ``pattern`` (like_pattern), ``phrase``
    (search_phrase), ``limit`` and ``offset``.
    """

    def __init__(self, tables: MemoryTables, columns: tuple, search: SearchTable):
        self._m, self._t, self._search = tables.memories, tables.topics, search
        self._columns = columns
        self._built: dict[tuple, sa.Select] = {}
        self._lock = threading.Lock()
        self.count_all = count_of_every_memory(tables)

    @staticmethod
    def parameters(exact: dict[str, str], topics: list[str], needle: str | None, limit: int,
                   offset: int) -> dict:
        """The values of a list's statements: ``exact`` maps the filters present to theirs."""
        parameters = dict(exact)
        parameters.update((topic_parameter(position), topic) for position, topic in enumerate(topics))
        if needle:
            parameters["pattern"], parameters["phrase"] = like_pattern(needle), search_phrase(needle)
        parameters["limit"], parameters["offset"] = limit, offset
        return parameters

    def page(self, filters: tuple[str, ...], topics: int, search: str | None, walk: bool,
             sort_by: str, sort_order: str) -> sa.Select:
        """One page of the memories that match, in list order.

        ``walk``: the plan that walks the sort order's index and tests each memory against
        the topics, rather than starting from the topics' own index entries.
        """
        return self._cached(self._build_page, filters, topics, search, walk, sort_by, sort_order)

    def in_topic_order(self, topics: int, sort_by: str, sort_order: str) -> sa.Select:
        """One page of the memories that carry every topic, read from the first topic's index
        entries in list order.

        The topic rows carry their memory's times, so the index hands them over already sorted
        and the page is the first ``offset + limit`` of them that carry the other topics too:
        however many memories the topic has, nothing is sorted.
        """
        return self._cached(self._build_topic_order, topics, sort_by, sort_order)

    def count(self, filters: tuple[str, ...], topics: int, search: str | None) -> sa.Select:
        """How many memories match, from the smallest index that knows: one topic's index
        entries, or the search index; by testing each memory of the rest otherwise."""
        return self._cached(self._build_count, filters, topics, search)

    def _cached(self, build: Callable[..., sa.Select], *shape) -> sa.Select:
        shape = (build.__name__, *shape)
        statement = self._built.get(shape)
        if statement is None:
            statement = build(*shape[1:])
            with self._lock:
                if len(self._built) >= SHAPES:
                    self._built.clear()
                self._built[shape] = statement
        return statement

    def _build_page(self, filters, topics, search, walk, sort_by, sort_order) -> sa.Select:
        m = self._m
        conditions = self._exact(filters) + self._topics(topics, walk) + self._matching(search)
        return self._paged(sa.select(*self._columns).where(*conditions),
                           m.c[sort_by], m.c.memory_id, sort_order)

    def _build_topic_order(self, topics, sort_by, sort_order) -> sa.Select:
        m, t = self._m, self._t
        others = []
        for position in range(1, topics):
            other = t.alias()
            others.append(sa.exists().where(other.c.memory_id == m.c.memory_id,
                                            other.c.topic == sa.bindparam(topic_parameter(position))))
        statement = (sa.select(*self._columns)
                     .select_from(t.join(m, m.c.memory_id == t.c.memory_id))
                     .where(t.c.topic == sa.bindparam(topic_parameter(0)), *others))
        return self._paged(statement, t.c[sort_by], t.c.memory_id, sort_order)

    def _build_count(self, filters, topics, search) -> sa.Select:
        m, t = self._m, self._t
        if not filters and not topics and not search:
            return self.count_all
        if not search and topics == 1 and filters in ((), ("user_id",)):
            # One row per memory and topic: the topic's index entries are its memories.
            conditions = [t.c.topic == sa.bindparam(topic_parameter(0))]
            if filters:
                conditions.append(t.c.user_id == sa.bindparam("user_id"))
            return sa.select(sa.func.count()).select_from(t).where(*conditions)
        if search == INDEXED and not topics and not filters:
            return self._search.count
        conditions = self._exact(filters) + self._topics(topics, walk=False) + self._matching(search)
        return sa.select(sa.func.count()).select_from(m).where(*conditions)

    def _exact(self, filters: tuple[str, ...]) -> list:
        return [self._m.c[name] == sa.bindparam(name) for name in filters]

    def _topics(self, topics: int, walk: bool) -> list:
        m, t = self._m, self._t
        conditions = []
        for position in range(topics):
            topic = sa.bindparam(topic_parameter(position))
            if walk:
                conditions.append(sa.exists().where(t.c.memory_id == m.c.memory_id, t.c.topic == topic))
            else:
                conditions.append(m.c.memory_id.in_(sa.select(t.c.memory_id).where(t.c.topic == topic)))
        return conditions

    def _matching(self, search: str | None) -> list:
        if search is None:
            return []
        m = self._m
        # The LIKE alone is exact; the search table narrows the rows it has to look at.
        conditions = [m.c.memory_folded.like(sa.bindparam("pattern"), escape=ESCAPE)]
        if search == INDEXED:
            conditions.append(m.c.id.in_(self._search.rows))
        return conditions

    @staticmethod
    def _paged(statement: sa.Select, sort_column: sa.Column, tie: sa.Column, sort_order: str) -> sa.Select:
        if sort_order == "asc":
            statement = statement.order_by(sort_column.asc(), tie.asc())
        else:
            statement = statement.order_by(sort_column.desc(), tie.desc())
        return statement.limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))
