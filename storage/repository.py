"""MemoryRepository: every read and write of one memory table family.

Writes keep four things in step inside one transaction: the memory row, its topic rows, its
owner's row in the per-user summary and the memory's history. Writers of one user take turns
(storage/locks.py): on PostgreSQL each first takes its users' advisory locks; on SQLite every
writer takes the database's write lock when it begins.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .database import (
    WRITES,
    after_bulk_load,
    bulk_cache,
    commits,
    several_statement_reads,
    single_statement_reads,
    snapshot_reads,
    unavailable_as_error,
    writer_turn,
)
from .locks import UserLocks
from .queries import EXACT_FILTERS, INDEXED, LIKE, ListStatements, search_table
from .schema import MemoryTables

SORT_COLUMNS = ("updated_at", "created_at")
ONE_MICROSECOND = timedelta(microseconds=1)
# The search indexes work on trigrams: shorter needles are matched by scanning.
TRIGRAM = 3
# How long an idempotency key is remembered unless the repository is told otherwise.
DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)
# Expired keys each keyed create purges at most: more than it adds, so the table cannot grow
# without bound, and few enough that no create pays for a long backlog at once.
PURGE_BATCH = 100
# Rows the change counter is spread over (schema: changes): concurrent PostgreSQL writers pick
# one at random, so they seldom queue on the same row lock.
CHANGE_SHARDS = 16
# Distinct counts a repository remembers between writes; past this, it starts again, so a
# stream of one-off searches cannot make it grow without bound.
REMEMBERED_COUNTS = 4096


# Not frozen, though never changed once made (dataclasses.replace makes a new one): a frozen
# dataclass sets each field through object.__setattr__, which made building a page's
# memories cost three times as much.
@dataclass(slots=True)
class Memory:
    memory_id: str
    memory: str
    topics: list[str]
    user_id: str | None
    agent_id: str | None
    team_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def version(self) -> str:
        """A digest of everything the memory is: it changes whenever any part of it does.

        ``updated_at`` alone almost does (every update moves it strictly forward), but a memory
        deleted and imported again under its id could come back different with the same times.
        """
        state = [self.memory_id, self.memory, self.topics, self.user_id, self.agent_id,
                 self.team_id, self.created_at.isoformat(), self.updated_at.isoformat()]
        return hashlib.sha256(orjson.dumps(state)).hexdigest()[:32]


class VersionMismatch(Exception):
    """A conditional write found the memory at another version, or found no memory."""


class IdempotencyConflict(Exception):
    """An idempotency key that cannot be honoured for this request."""


class IdempotencyKeyReused(IdempotencyConflict):
    """The key already created a memory from a different request."""


class IdempotentMemoryGone(IdempotencyConflict):
    """The key created a memory that has since been deleted."""


class MemoriesChanged(Exception):
    """Memories a write was based on have changed or gone since they were read."""


class _OwnersChanged(Exception):
    """The memories a delete names changed owners before it held their owners' locks."""


class MemoryExists(Exception):
    """Memories with these ids are already stored, or were given twice in one batch."""

    def __init__(self, memory_ids: Sequence[str]):
        self.memory_ids = list(memory_ids)
        super().__init__("memory ids already taken: " + ", ".join(self.memory_ids))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version of a memory: what a create, update or delete left (a delete: what went)."""

    version: int
    event: str
    memory: str
    topics: list[str]
    user_id: str | None
    agent_id: str | None
    team_id: str | None
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class UserStats:
    user_id: str
    total_memories: int
    last_memory_updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    items: list
    page: int
    limit: int
    total_count: int
    search_time_ms: float

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total_count / self.limit)


@dataclass(frozen=True, slots=True)
class MemoryQuery:
    """What a list of memories is filtered, ordered and paged by."""

    user_id: str | None = None
    agent_id: str | None = None
    team_id: str | None = None
    topics: Sequence[str] = ()
    search_content: str | None = None
    sort_by: str = "updated_at"
    sort_order: str = "desc"
    limit: int = 20
    page: int = 1


# The question "how many memories are there": a list with no filter.
ALL_MEMORIES = (None, None, None, (), None)


class RememberedCounts:
    """Counts that read many index entries, remembered until the next write.

    A search for a common word has tens of thousands of matches, and counting them for its
    exact total is most of what the search costs; asking again before anything changed would
    count the same matches again. Every write transaction adds one to the family's change
    counter inside its own transaction (MemoryRepository._writing), so the counter's sum names
    a state of the data and only grows. A read takes the sum first, then counts: when the
    same question comes with the same sum, no write has committed since that sum was read,
    so the count made after it still holds. The sum is shared through the database, so a
    write in any process ends every process's remembered counts.
    """

    def __init__(self, changes_so_far: sa.Select):
        self._changes_so_far = changes_so_far
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

    def _get(self, changes: int, question: tuple, count: Callable[[], int]) -> int:
        seen, counts = self._remembered
        if seen == changes and question in counts:
            return counts[question]
        n = count()
        with self._lock:
            seen, counts = self._remembered
            if seen != changes or len(counts) >= REMEMBERED_COUNTS:
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
        return self._counts._get(self._changes, question, count)


def utcnow() -> datetime:
    return datetime.now(UTC)


def unique_topics(topics: Iterable[str] | None) -> list[str]:
    """Topics are a set that remembers the order the client gave."""
    return list(dict.fromkeys(topics or ()))


class MemoryRepository:
    def __init__(self, engine: sa.Engine, tables: MemoryTables,
                 idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL):
        self._engine = engine
        self.idempotency_ttl = idempotency_ttl
        self._writer = engine.execution_options(**{WRITES: True})
        self._reader = single_statement_reads(engine)
        self._several_reader = several_statement_reads(engine)
        self._snapshot_reader = snapshot_reads(engine)
        self.tables = tables
        self._locks = UserLocks(tables.name, engine.dialect.name)
        # Creates made at the same time share a commit (and its flush to disk). A fresh UUID
        # has no history to continue.
        self._creates = commits(engine, self._writing, self._insert_created)
        m, t, s, h = tables.memories, tables.topics, tables.user_stats, tables.history
        self._m, self._t, self._s, self._h = m, t, s, h
        c = tables.changes
        self._changes_so_far = sa.select(sa.func.coalesce(sa.func.sum(c.c.changes), 0))
        self._counts = RememberedCounts(self._changes_so_far)
        self._memory_columns = (
            m.c.memory_id, m.c.memory, m.c.user_id, m.c.agent_id, m.c.team_id,
            m.c.created_at, m.c.updated_at,
        )

        self._search = search_table(tables.name, engine.dialect.name)
        self._distinct_topics = _loose_index_scan(t.c.topic, ())
        self._distinct_topics_of_user = _loose_index_scan(
            t.c.topic, (t.c.user_id == sa.bindparam("user_id"),))
        self._lists = ListStatements(tables, self._memory_columns, self._search)
        self._count_all = self._lists.count_all
        self._count_of_user = sa.select(s.c.total_memories).where(s.c.user_id == sa.bindparam("user_id"))
        self._stats_page = (
            sa.select(s.c.user_id, s.c.total_memories, s.c.last_memory_updated_at,
                      self._changes_so_far.scalar_subquery().label("changes"))
            .order_by(s.c.last_memory_updated_at.desc(), s.c.user_id.asc())
            .limit(sa.bindparam("limit"))
            .offset(sa.bindparam("offset"))
        )
        self._stats_page_of_user = self._stats_page.where(s.c.user_id == sa.bindparam("user_id"))
        self._count_users = sa.select(sa.func.count()).select_from(s)
        self._count_users_with_id = self._count_users.where(s.c.user_id == sa.bindparam("user_id"))

        # Statements of fixed shape, built once.
        self._select_by_id = sa.select(*self._memory_columns).where(
            m.c.memory_id == sa.bindparam("memory_id")
        )
        # A memory with its topics, one row per topic, in one statement: one snapshot, so the
        # text and the topics are always of the same version, without a transaction around them.
        self._select_with_topics = (
            sa.select(*self._memory_columns, t.c.topic)
            .select_from(m.outerjoin(t, t.c.memory_id == m.c.memory_id))
            .where(m.c.memory_id == sa.bindparam("memory_id"))
            .order_by(t.c.position)
        )
        self._select_with_topics_of_user = self._select_with_topics.where(
            m.c.user_id == sa.bindparam("user_id"))
        self._select_by_id_and_user = self._select_by_id.where(
            m.c.user_id == sa.bindparam("user_id")
        )
        self._select_topics = (
            sa.select(t.c.memory_id, t.c.topic)
            .where(t.c.memory_id.in_(sa.bindparam("memory_ids", expanding=True)))
            .order_by(t.c.memory_id, t.c.position)
        )
        self._insert_memory = sa.insert(m)
        self._insert_topics = sa.insert(t)
        self._update_memory = (
            sa.update(m)
            .where(m.c.memory_id == sa.bindparam("target_id"))
            .values(
                memory=sa.bindparam("memory"),
                memory_folded=sa.bindparam("memory_folded"),
                updated_at=sa.bindparam("updated_at"),
            )
        )
        self._delete_topics = sa.delete(t).where(t.c.memory_id == sa.bindparam("memory_id"))
        self._insert_history = sa.insert(h)
        self._last_versions = (
            sa.select(h.c.memory_id, sa.func.max(h.c.version))
            .where(h.c.memory_id.in_(sa.bindparam("memory_ids", expanding=True)))
            .group_by(h.c.memory_id)
        )
        self._select_history = (
            sa.select(h.c.version, h.c.event, h.c.memory, h.c.topics, h.c.user_id, h.c.agent_id,
                      h.c.team_id, h.c.changed_at)
            .where(h.c.memory_id == sa.bindparam("memory_id"))
            .order_by(h.c.version)
        )
        self._select_history_of_user = self._select_history.where(h.c.user_id == sa.bindparam("user_id"))

        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        upsert = insert(s).values(
            user_id=sa.bindparam("user_id"),
            total_memories=sa.bindparam("delta"),
            last_memory_updated_at=sa.bindparam("updated_at"),
        )
        later = sa.case(
            (upsert.excluded.last_memory_updated_at > s.c.last_memory_updated_at,
             upsert.excluded.last_memory_updated_at),
            else_=s.c.last_memory_updated_at,
        )
        # Adding memories to a user is commutative (count up, keep the latest time), so one
        # upsert both locks the user's summary row and applies the change.
        self._add_to_user = upsert.on_conflict_do_update(
            index_elements=[s.c.user_id],
            set_={"total_memories": s.c.total_memories + upsert.excluded.total_memories,
                  "last_memory_updated_at": later},
        )
        latest_of_user = (
            sa.select(sa.func.max(m.c.updated_at))
            .where(m.c.user_id == s.c.user_id)
            .scalar_subquery()
        )
        self._remove_from_user = (
            sa.update(s)
            .where(s.c.user_id == sa.bindparam("target_user"))
            .values(
                total_memories=s.c.total_memories - sa.bindparam("removed"),
                last_memory_updated_at=sa.func.coalesce(latest_of_user, s.c.last_memory_updated_at),
            )
        )
        self._drop_empty_users = sa.delete(s).where(
            s.c.user_id.in_(sa.bindparam("user_ids", expanding=True)),
            s.c.total_memories <= 0,
        )

        k = tables.idempotency
        self._k = k
        self._claim_key = insert(k).values(
            user_id=sa.bindparam("user_id"),
            idempotency_key=sa.bindparam("key"),
            request_digest=sa.bindparam("digest"),
            memory_id=sa.bindparam("memory_id"),
            expires_at=sa.bindparam("expires_at"),
        ).on_conflict_do_nothing().returning(k.c.memory_id)
        self._select_key = sa.select(k.c.request_digest, k.c.memory_id).where(
            k.c.user_id == sa.bindparam("user_id"), k.c.idempotency_key == sa.bindparam("key"))
        self._erase_memories = sa.delete(m).where(m.c.user_id == sa.bindparam("user_id"))
        self._erase_history = sa.delete(h).where(h.c.user_id == sa.bindparam("user_id"))
        self._erase_keys = sa.delete(k).where(k.c.user_id == sa.bindparam("user_id"))
        self._erase_summary = sa.delete(s).where(s.c.user_id == sa.bindparam("user_id"))
        self._owners = (sa.select(m.c.user_id).distinct()
                        .where(m.c.memory_id.in_(sa.bindparam("memory_ids", expanding=True)),
                               m.c.user_id.is_not(None)))
        self._drop_expired_key = sa.delete(k).where(
            k.c.user_id == sa.bindparam("user_id"), k.c.idempotency_key == sa.bindparam("key"),
            k.c.expires_at <= sa.bindparam("now"))
        # SKIP LOCKED (PostgreSQL): creates purging at once never wait for each other's rows,
        # so the purge can share the create's transaction without adding lock waits.
        expired = (sa.select(k.c.user_id, k.c.idempotency_key)
                   .where(k.c.expires_at <= sa.bindparam("now"))
                   .order_by(k.c.expires_at)
                   .limit(PURGE_BATCH)
                   .with_for_update(skip_locked=True))
        self._purge_expired_keys = sa.delete(k).where(
            sa.tuple_(k.c.user_id, k.c.idempotency_key).in_(expired))
        counted = insert(c).values(shard=sa.bindparam("shard"), changes=1)
        self._count_change = counted.on_conflict_do_update(
            index_elements=[c.c.shard], set_={"changes": c.c.changes + 1})

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """A write transaction, begun once it is this writer's turn (see database.WriterQueue),
        that counts itself in the change counter (see RememberedCounts) if it commits."""
        with writer_turn(self._engine), self._writer.begin() as conn:
            yield conn
            # Last, so that on PostgreSQL the counter row's lock is held only through the commit.
            conn.execute(self._count_change, {"shard": random.randrange(CHANGE_SHARDS)})

    # -- reads -------------------------------------------------------------------------------

    @unavailable_as_error(read=True)
    def get(self, memory_id: str, user_id: str | None = None) -> Memory | None:
        with self._reader.connect() as conn:
            if user_id is None:
                rows = conn.execute(self._select_with_topics, {"memory_id": memory_id}).all()
            else:
                rows = conn.execute(self._select_with_topics_of_user,
                                    {"memory_id": memory_id, "user_id": user_id}).all()
        if not rows:
            return None
        return _memory(rows[0], [row[7] for row in rows if row[7] is not None])

    @unavailable_as_error(read=True)
    def history(self, memory_id: str, user_id: str | None = None) -> list[HistoryEntry]:
        """Every recorded version of the memory, oldest first (only ``user_id``'s, if given);
        empty if there is none."""
        with self._reader.connect() as conn:
            if user_id is None:
                rows = conn.execute(self._select_history, {"memory_id": memory_id}).all()
            else:
                rows = conn.execute(self._select_history_of_user,
                                    {"memory_id": memory_id, "user_id": user_id}).all()
        return [HistoryEntry(*row) for row in rows]

    @unavailable_as_error(read=True)
    def of_user(self, user_id: str) -> list[Memory]:
        """All of ``user_id``'s memories, oldest first."""
        m = self._m
        # One snapshot for the memories and their topics, so each reads as one version.
        with self._snapshot_reader.begin() as conn:
            rows = conn.execute(sa.select(*self._memory_columns).where(m.c.user_id == user_id)
                                .order_by(m.c.created_at, m.c.memory_id)).all()
            return self._with_topics(conn, rows)

    @unavailable_as_error(read=True)
    def list(self, query: MemoryQuery) -> Page:
        started = time.perf_counter()
        filters = tuple(name for name in EXACT_FILTERS if getattr(query, name) is not None)
        topics = unique_topics(query.topics)
        needle = query.search_content.casefold() if query.search_content else None
        offset = (query.page - 1) * query.limit
        parameters = ListStatements.parameters({name: getattr(query, name) for name in filters},
                                               topics, needle, query.limit, offset)

        with self._several_reader.begin() as conn:
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
        return counts.get(ALL_MEMORIES, lambda: conn.execute(self._count_all).scalar_one())

    @unavailable_as_error(read=True)
    def count(self) -> int:
        """How many memories the table holds, from the per-user summaries (plus the memories
        of no user), without reading the memories themselves."""
        with self._reader.connect() as conn:
            return conn.execute(self._count_all).scalar_one()

    @unavailable_as_error(read=True)
    def scan(self, after: str | None, limit: int) -> list[Memory]:
        """Up to ``limit`` memories with ids after ``after``, in memory_id order: one page of a
        walk over the whole table that never holds more than a page, and stays correct (by keyset,
        not offset) while other writers insert or delete."""
        m = self._m
        statement = sa.select(*self._memory_columns).order_by(m.c.memory_id).limit(limit)
        if after is not None:
            statement = statement.where(m.c.memory_id > after)
        with self._snapshot_reader.begin() as conn:
            return self._with_topics(conn, conn.execute(statement).all())

    def _count(self, conn: sa.Connection, counts: CountsAt, query: MemoryQuery, filters: tuple[str, ...],
               topics: list[str], needle: str | None, parameters: dict) -> int:
        """How many memories match: one user's from their summary row, anything else as
        remembered since the last write (see RememberedCounts) or counted now."""
        if not needle and not topics and filters == ("user_id",):
            return conn.execute(self._count_of_user, {"user_id": query.user_id}).scalar() or 0
        question = (query.user_id, query.agent_id, query.team_id, tuple(sorted(topics)), needle)
        statement = self._lists.count(filters, len(topics), self._search_kind(needle, narrow=True))
        return counts.get(question, lambda: self._count_now(conn, query, statement, parameters))

    @staticmethod
    def _count_now(conn: sa.Connection, query: MemoryQuery, statement: sa.Select, parameters: dict) -> int:
        """Count the memories that match ``query`` now, with its ListStatements.count."""
        return conn.execute(statement, parameters).scalar_one()

    @unavailable_as_error(read=True)
    def topics(self, user_id: str | None = None) -> list[str]:
        with self._reader.connect() as conn:
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
        with self._reader.connect() as conn:
            rows = conn.execute(page_of, parameters).all()
            counts = self._counts.reading(conn, int(rows[0][3]) if rows else None)
            total = counts.get(("user_stats", user_id), lambda: conn.execute(count, parameters).scalar_one())
        return Page([UserStats(*row[:3]) for row in rows], page, limit, total, _ms_since(started))

    # -- writes ------------------------------------------------------------------------------

    @unavailable_as_error
    def create(
        self,
        *,
        memory: str,
        user_id: str | None,
        topics: Iterable[str] | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
    ) -> Memory:
        now = utcnow()
        created = Memory(
            memory_id=str(uuid.uuid4()),
            memory=memory,
            topics=unique_topics(topics),
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            created_at=now,
            updated_at=now,
        )
        self._creates.submit(created)
        return created

    @unavailable_as_error
    def create_once(
        self,
        idempotency_key: str,
        *,
        memory: str,
        user_id: str,
        topics: Iterable[str] | None = None,
    ) -> tuple[Memory, bool]:
        """``create``, at most once per ``user_id`` and key while the key lasts.

        Returns the memory and whether it was made earlier: a request repeating the one that
        first used the key gets that memory back (as it is now) instead of a new one, even when
        the repeats race each other; IdempotencyKeyReused if the key made a memory from a
        different request, IdempotentMemoryGone if the memory it made has been deleted.
        """
        topics = unique_topics(topics)
        digest = hashlib.sha256(orjson.dumps([memory, topics])).hexdigest()
        now = utcnow()
        created = Memory(str(uuid.uuid4()), memory, topics, user_id, None, None, now, now)
        key = {"user_id": user_id, "key": idempotency_key}
        with self._writing() as conn:
            self._locks.lock(conn, [user_id])
            conn.execute(self._purge_expired_keys, {"now": now})
            conn.execute(self._drop_expired_key, {**key, "now": now})
            # Whoever inserts the key row makes the memory. On PostgreSQL a racing claim of
            # the same key waits here for the first to commit, then finds the row taken.
            claimed = conn.execute(self._claim_key, {
                **key, "digest": digest, "memory_id": created.memory_id,
                "expires_at": now + self.idempotency_ttl}).first()
            if claimed is not None:
                self._insert(conn, [created], fresh_ids=True)
                return created, False
            earlier = conn.execute(self._select_key, key).one()
            if earlier.request_digest != digest:
                raise IdempotencyKeyReused(idempotency_key)
            rows = conn.execute(self._select_by_id, {"memory_id": earlier.memory_id}).all()
            if not rows:
                raise IdempotentMemoryGone(idempotency_key)
            return self._with_topics(conn, rows)[0], True

    @unavailable_as_error
    def insert(self, memories: Sequence[Memory]) -> None:
        """Store complete memories as given (ids and timestamps kept), in one transaction."""
        memories = [replace(m, topics=unique_topics(m.topics)) for m in memories]
        with self._writing() as conn, bulk_cache(conn):
            self._locks.lock(conn, [m.user_id for m in memories])
            self._insert(conn, memories)

    @unavailable_as_error
    def insert_new(self, memories: Sequence[Memory]) -> None:
        """``insert``, but an id that is taken raises MemoryExists naming it, not a database error."""
        try:
            self.insert(memories)
        except sa.exc.IntegrityError:
            ids = [item.memory_id for item in memories]
            with self._engine.connect() as conn:
                taken = set(conn.execute(
                    sa.select(self._m.c.memory_id).where(self._m.c.memory_id.in_(ids))
                ).scalars())
            seen: set[str] = set()
            for memory_id in ids:
                if memory_id in seen:
                    taken.add(memory_id)
                seen.add(memory_id)
            if not taken:
                raise
            raise MemoryExists([i for i in dict.fromkeys(ids) if i in taken]) from None

    @unavailable_as_error
    def update(
        self, memory_id: str, *, user_id: str, memory: str, topics: Iterable[str] | None,
        if_version: Callable[[str], bool] | None = None,
    ) -> Memory | None:
        """Replace the text and topics of ``user_id``'s memory; None if it has no such memory.

        With ``if_version``, only if it accepts the memory's current version: VersionMismatch
        otherwise, and nothing changes. The version is read under the row's lock, in the
        transaction that writes, so no other write can come between the check and this one.
        """
        topics = unique_topics(topics)
        with self._writing() as conn:
            self._locks.lock(conn, [user_id])
            row = conn.execute(
                self._select_by_id_and_user.with_for_update(),
                {"memory_id": memory_id, "user_id": user_id},
            ).first()
            if row is None:
                return None
            current = Memory(*row[:2], [], *row[2:])
            if if_version is not None:
                current = self._with_topics(conn, [row])[0]
                if not if_version(current.version):
                    raise VersionMismatch(memory_id)
            # Strictly later than the version it replaces, even within one clock tick.
            updated_at = max(utcnow(), current.updated_at + ONE_MICROSECOND)
            conn.execute(
                self._update_memory,
                {"target_id": memory_id, "memory": memory,
                 "memory_folded": memory.casefold(), "updated_at": updated_at},
            )
            conn.execute(self._delete_topics, {"memory_id": memory_id})
            if topics:
                conn.execute(self._insert_topics, self._topic_rows(
                    replace(current, topics=topics, updated_at=updated_at)))
            conn.execute(self._add_to_user,
                         {"user_id": user_id, "delta": 0, "updated_at": updated_at})
            updated = replace(current, memory=memory, topics=topics, updated_at=updated_at)
            self._record(conn, "update", [updated], updated_at)
        return updated

    @unavailable_as_error
    def delete(self, memory_ids: Sequence[str], user_id: str | None = None,
               if_version: Callable[[str], bool] | None = None) -> int:
        """Delete the listed memories (only ``user_id``'s, if given); returns how many went.

        With ``if_version`` (one memory only), only if the memory exists and ``if_version``
        accepts its current version, read under its lock: VersionMismatch otherwise.
        """
        m = self._m
        ids = list(dict.fromkeys(memory_ids))
        if if_version is not None and len(ids) != 1:
            raise ValueError("a conditional delete names exactly one memory")
        condition = None if if_version is None else (ids[0], if_version)
        if user_id is not None:
            with self._writing() as conn:
                self._locks.lock(conn, [user_id])
                return self._delete(conn, [m.c.memory_id.in_(ids), m.c.user_id == user_id], condition)
        # Whose memories these are is known only by reading them, before their owners' locks
        # are held; if they have changed hands by then (deleted, and imported again under
        # another owner), the transaction starts over holding the new owners' locks too.
        owners: set[str] = set()
        while True:
            try:
                with self._writing() as conn:
                    owners |= set(conn.execute(self._owners, {"memory_ids": ids}).scalars())
                    self._locks.lock(conn, owners)
                    if self._locks.enabled and not owners.issuperset(
                            conn.execute(self._owners, {"memory_ids": ids}).scalars()):
                        raise _OwnersChanged
                    return self._delete(conn, [m.c.memory_id.in_(ids)], condition)
            except _OwnersChanged:
                continue

    @unavailable_as_error
    def erase_user(self, user_id: str) -> int:
        """Remove every trace of ``user_id``: memories, topics, history and summary, at once.

        Returns how many memories went. Nothing records the erasure itself: that is the point.
        """
        user = {"user_id": user_id}
        with self._writing() as conn:
            self._locks.lock(conn, [user_id])
            # Topic rows go with their memories (ON DELETE CASCADE).
            removed = conn.execute(self._erase_memories, user).rowcount
            conn.execute(self._erase_history, user)
            # A key would still say what the user once stored (a retry is told it was deleted,
            # another body that the key was used): it goes too, and is free again.
            conn.execute(self._erase_keys, user)
            conn.execute(self._erase_summary, user)
        return removed

    @unavailable_as_error
    def replace_memories(self, user_id: str, replaced: Sequence[Memory], replacement: Memory) -> int:
        """Delete ``replaced``, memories of ``user_id`` as they were read, and store
        ``replacement`` in their place, in one transaction; returns how many were deleted.

        Only if every one of them is still stored as it was read: MemoriesChanged otherwise,
        and nothing changes. Memories the user gained since they were read are kept.
        """
        m = self._m
        ids = [memory.memory_id for memory in replaced]
        with self._writing() as conn:
            self._locks.lock(conn, [user_id])
            rows = conn.execute(sa.select(*self._memory_columns)
                                .where(m.c.memory_id.in_(ids), m.c.user_id == user_id)).all()
            now = {memory.memory_id: memory.version for memory in self._with_topics(conn, rows)}
            if now != {memory.memory_id: memory.version for memory in replaced}:
                raise MemoriesChanged(f"{user_id}'s memories changed since they were read")
            removed = self._delete(conn, [m.c.memory_id.in_(ids), m.c.user_id == user_id])
            self._insert(conn, [replace(replacement, topics=unique_topics(replacement.topics))],
                         fresh_ids=True)
        return removed

    def _delete(self, conn: sa.Connection, scope: list,
                condition: tuple[str, Callable[[str], bool]] | None = None) -> int:
        """Delete the memories in ``scope`` and record it in their history. With ``condition``
        (the one memory in scope, and what its version must satisfy), VersionMismatch unless
        the version read under the lock the delete then holds satisfies it."""
        m, t = self._m, self._t
        if condition is not None:
            memory_id, if_version = condition
            rows = conn.execute(sa.select(*self._memory_columns).where(*scope).with_for_update()).all()
            if not rows or not if_version(self._with_topics(conn, rows)[0].version):
                raise VersionMismatch(memory_id)
        # The topics go with their memories (ON DELETE CASCADE): read them first, for history.
        topics: dict[str, list[str]] = {}
        for memory_id, topic in conn.execute(
            sa.select(t.c.memory_id, t.c.topic)
            .where(t.c.memory_id.in_(sa.select(m.c.memory_id).where(*scope)))
            .order_by(t.c.memory_id, t.c.position)
        ):
            topics.setdefault(memory_id, []).append(topic)
        removed = [_memory(row, topics.get(row[0], []))
                   for row in conn.execute(sa.delete(m).where(*scope).returning(*self._memory_columns))]
        per_user: dict[str, int] = {}
        for memory in removed:
            if memory.user_id is not None:
                per_user[memory.user_id] = per_user.get(memory.user_id, 0) + 1
        if per_user:
            conn.execute(
                self._remove_from_user,
                [{"target_user": u, "removed": n} for u, n in per_user.items()],
            )
            conn.execute(self._drop_empty_users, {"user_ids": list(per_user)})
        if removed:
            self._record(conn, "delete", removed, utcnow())
        return len(removed)

    @unavailable_as_error
    def refresh_statistics(self) -> None:
        """Let the query planner see the tables as they are now (see database.after_bulk_load).

        After a bulk load its statistics still describe the table before it: PostgreSQL then
        plans for a small table (a sort of every search match instead of a walk down the
        index, for one) until autovacuum catches up.
        """
        # The search table too: a plain table on PostgreSQL; on SQLite, ANALYZE passes over it.
        tables = [table.name for table in (self._m, self._t, self._s, self._h)]
        after_bulk_load(self._engine, [*tables, f"{self.tables.name}_search"], self._writing)

    # -- helpers -----------------------------------------------------------------------------

    def _insert_created(self, conn: sa.Connection, memories: Sequence[Memory]) -> None:
        """Store memories just created (fresh UUIDs, so no history to continue), their owners
        locked first."""
        self._locks.lock(conn, [item.user_id for item in memories])
        self._insert(conn, memories, fresh_ids=True)

    def _insert(self, conn: sa.Connection, memories: Sequence[Memory], fresh_ids: bool = False) -> None:
        """Insert new memories with their topics, count them in their owners' summaries and
        record their creation (an id with a history, deleted before, continues it)."""
        latest: dict[str, tuple[int, datetime]] = {}
        for item in memories:
            if item.user_id is not None:
                count, when = latest.get(item.user_id, (0, item.updated_at))
                latest[item.user_id] = (count + 1, max(when, item.updated_at))
        if latest:
            conn.execute(
                self._add_to_user,
                [{"user_id": u, "delta": n, "updated_at": when}
                 for u, (n, when) in sorted(latest.items())],
            )
        conn.execute(
            self._insert_memory,
            [{"memory_id": item.memory_id, "memory": item.memory,
              "memory_folded": item.memory.casefold(), "user_id": item.user_id,
              "agent_id": item.agent_id, "team_id": item.team_id,
              "created_at": item.created_at, "updated_at": item.updated_at}
             for item in memories],
        )
        topic_rows = [row for item in memories
                      for row in self._topic_rows(item)]
        if topic_rows:
            conn.execute(self._insert_topics, topic_rows)
        self._record(conn, "create", memories, None, fresh_ids)

    def _record(self, conn: sa.Connection, event: str, memories: Sequence[Memory],
                changed_at: datetime | None, fresh_ids: bool = False) -> None:
        """Add a version to each memory's history: the memory as ``event`` left it, at
        ``changed_at`` (a created memory: its ``updated_at``, the time of the version it holds)."""
        if not memories:
            return
        last: dict[str, int] = {}
        if not fresh_ids:
            # Batched like the memories themselves, so a bulk import stays a few statements.
            last = dict(conn.execute(self._last_versions,
                                     {"memory_ids": [item.memory_id for item in memories]}).all())
        conn.execute(
            self._insert_history,
            [{"memory_id": item.memory_id, "version": last.get(item.memory_id, 0) + 1, "event": event,
              "memory": item.memory, "topics": list(item.topics), "user_id": item.user_id,
              "agent_id": item.agent_id, "team_id": item.team_id,
              "changed_at": changed_at or item.updated_at}
             for item in memories],
        )

    @staticmethod
    def _topic_rows(memory: Memory) -> list[dict]:
        return [{"memory_id": memory.memory_id, "topic": topic, "position": position,
                 "user_id": memory.user_id, "created_at": memory.created_at,
                 "updated_at": memory.updated_at}
                for position, topic in enumerate(memory.topics)]

    def _with_topics(self, conn: sa.Connection, rows: Sequence[sa.Row]) -> list[Memory]:
        topics: dict[str, list[str]] = {row[0]: [] for row in rows}
        if topics:
            for memory_id, topic in conn.execute(self._select_topics, {"memory_ids": list(topics)}).all():
                topics[memory_id].append(topic)
        return [_memory(row, topics[row[0]]) for row in rows]


def _memory(row: sa.Row, topics: list[str]) -> Memory:
    """The memory in a row that starts with MemoryRepository._memory_columns.

    Read by position: looking a Row's values up by name cost more than running the statement
    that read them (3,800 instructions a value, against 270).
    """
    return Memory(row[0], row[1], topics, row[2], row[3], row[4], row[5], row[6])


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
