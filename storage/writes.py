"""Every write of one memory table family.

A write keeps four things in step inside one transaction: the memory row, its topic rows, its
owner's row in the per-user summary and the memory's history. Writers of one user take turns
(storage/locks.py): on PostgreSQL each first takes its users' advisory locks; on SQLite every
writer takes the database's write lock when it begins. Every write transaction also counts
itself in the family's change counter (storage/counts.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .database import WRITES, bulk_cache, commits, unavailable_as_error, writer_turn
from .family import DEFAULT_IDEMPOTENCY_TTL, Family, memory_from_row
from .model import (
    IdempotencyKeyReused,
    IdempotentMemoryGone,
    MemoriesChanged,
    Memory,
    MemoryExists,
    VersionMismatch,
    unique_topics,
    utcnow,
)
from .schema import MemoryTables
from .vectors import Embedder

ONE_MICROSECOND = timedelta(microseconds=1)
# Expired keys each keyed create purges at most: more than it adds, so the table cannot grow
# without bound, and few enough that no create pays for a long backlog at once.
PURGE_BATCH = 100
# Rows the change counter is spread over (schema: changes): concurrent PostgreSQL writers pick
# one at random, so they seldom queue on the same row lock.
CHANGE_SHARDS = 16


class _OwnersChanged(Exception):
    """The memories a delete names changed owners before it held their owners' locks."""

    def __init__(self, owners: set[str]):
        super().__init__(", ".join(sorted(owners)))
        self.owners = owners


class MemoryWrites(Family):
    def __init__(self, engine: sa.Engine, tables: MemoryTables,
                 idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL, embedder: Embedder | None = None):
        super().__init__(engine, tables, idempotency_ttl, embedder)
        self._writer = engine.execution_options(**{WRITES: True})
        # Creates made at the same time share a commit (and its flush to disk).
        self._creates = commits(engine, self._writing, self._insert_created)
        memories, topics, user_stats = tables.memories, tables.topics, tables.user_stats
        history, keys, changes = tables.history, tables.idempotency, tables.changes
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

        self._select_by_id = sa.select(*self._memory_columns).where(
            memories.c.memory_id == sa.bindparam("memory_id"))
        self._select_by_id_and_user = self._select_by_id.where(
            memories.c.user_id == sa.bindparam("user_id"))
        self._owners = (sa.select(memories.c.user_id).distinct()
                        .where(memories.c.memory_id.in_(sa.bindparam("memory_ids", expanding=True)),
                               memories.c.user_id.is_not(None)))
        self._insert_memory = sa.insert(memories)
        self._insert_topics = sa.insert(topics)
        self._update_memory = (
            sa.update(memories)
            .where(memories.c.memory_id == sa.bindparam("target_id"))
            .values(memory=sa.bindparam("memory"), memory_folded=sa.bindparam("memory_folded"),
                    updated_at=sa.bindparam("updated_at"))
        )
        self._delete_topics = sa.delete(topics).where(topics.c.memory_id == sa.bindparam("memory_id"))
        self._insert_history = sa.insert(history)
        self._last_versions = (
            sa.select(history.c.memory_id, sa.func.max(history.c.version))
            .where(history.c.memory_id.in_(sa.bindparam("memory_ids", expanding=True)))
            .group_by(history.c.memory_id)
        )

        upsert = insert(user_stats).values(
            user_id=sa.bindparam("user_id"),
            total_memories=sa.bindparam("delta"),
            last_memory_updated_at=sa.bindparam("updated_at"),
        )
        later = sa.case(
            (upsert.excluded.last_memory_updated_at > user_stats.c.last_memory_updated_at,
             upsert.excluded.last_memory_updated_at),
            else_=user_stats.c.last_memory_updated_at,
        )
        # Adding memories to a user is commutative (count up, keep the latest time): one upsert.
        self._add_to_user = upsert.on_conflict_do_update(
            index_elements=[user_stats.c.user_id],
            set_={"total_memories": user_stats.c.total_memories + upsert.excluded.total_memories,
                  "last_memory_updated_at": later},
        )
        latest_of_user = (
            sa.select(sa.func.max(memories.c.updated_at))
            .where(memories.c.user_id == user_stats.c.user_id)
            .scalar_subquery()
        )
        self._remove_from_user = (
            sa.update(user_stats)
            .where(user_stats.c.user_id == sa.bindparam("target_user"))
            .values(
                total_memories=user_stats.c.total_memories - sa.bindparam("removed"),
                last_memory_updated_at=sa.func.coalesce(latest_of_user, user_stats.c.last_memory_updated_at),
            )
        )
        self._drop_empty_users = sa.delete(user_stats).where(
            user_stats.c.user_id.in_(sa.bindparam("user_ids", expanding=True)),
            user_stats.c.total_memories <= 0,
        )

        self._claim_key = insert(keys).values(
            user_id=sa.bindparam("user_id"),
            idempotency_key=sa.bindparam("key"),
            request_digest=sa.bindparam("digest"),
            memory_id=sa.bindparam("memory_id"),
            expires_at=sa.bindparam("expires_at"),
        ).on_conflict_do_nothing().returning(keys.c.memory_id)
        the_key = (keys.c.user_id == sa.bindparam("user_id"), keys.c.idempotency_key == sa.bindparam("key"))
        self._select_key = sa.select(keys.c.request_digest, keys.c.memory_id).where(*the_key)
        self._drop_expired_key = sa.delete(keys).where(*the_key, keys.c.expires_at <= sa.bindparam("now"))
        # SKIP LOCKED (PostgreSQL): creates purging at once never wait for each other's rows,
        # so the purge can share the create's transaction without adding lock waits.
        expired = (sa.select(keys.c.user_id, keys.c.idempotency_key)
                   .where(keys.c.expires_at <= sa.bindparam("now"))
                   .order_by(keys.c.expires_at)
                   .limit(PURGE_BATCH)
                   .with_for_update(skip_locked=True))
        self._purge_expired_keys = sa.delete(keys).where(
            sa.tuple_(keys.c.user_id, keys.c.idempotency_key).in_(expired))

        of_user = sa.bindparam("user_id")
        self._erase_memories = sa.delete(memories).where(memories.c.user_id == of_user)
        self._erase_history = sa.delete(history).where(history.c.user_id == of_user)
        self._erase_keys = sa.delete(keys).where(keys.c.user_id == of_user)
        self._erase_summary = sa.delete(user_stats).where(user_stats.c.user_id == of_user)

        counted = insert(changes).values(shard=sa.bindparam("shard"), changes=1)
        self._count_change = counted.on_conflict_do_update(
            index_elements=[changes.c.shard], set_={"changes": changes.c.changes + 1})

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """A write transaction, begun once it is this writer's turn (see database.WriterQueue),
        that counts itself in the change counter (see RememberedCounts) if it commits."""
        with writer_turn(self._engine), self._writer.begin() as conn:
            yield conn
            # Last, so that on PostgreSQL the counter row's lock is held only through the commit.
            conn.execute(self._count_change, {"shard": random.randrange(CHANGE_SHARDS)})

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
            conn.execute(self._drop_expired_key, {**key, "now": now})
            # Whoever inserts the key row makes the memory. On PostgreSQL a racing claim of
            # the same key waits here for the first to commit, then finds the row taken.
            claimed = conn.execute(self._claim_key, {
                **key, "digest": digest, "memory_id": created.memory_id,
                "expires_at": now + self.idempotency_ttl}).first()
            if claimed is not None:
                self._insert(conn, [created], fresh_ids=True)
                # Last but for the change counter: once it holds other users' expired keys, a
                # transaction waits for nothing, so two keyed creates purging each other's
                # keys cannot deadlock (SKIP LOCKED keeps the purge itself from waiting).
                conn.execute(self._purge_expired_keys, {"now": now})
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
            memories = self.tables.memories
            with self._engine.connect() as conn:
                taken = set(conn.execute(
                    sa.select(memories.c.memory_id).where(memories.c.memory_id.in_(ids))
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
            if memory != current.memory:
                self.vectors.stored(conn, [updated], text_changed=True)
            self._record(conn, "update", [updated], updated_at)
        return updated

    @unavailable_as_error
    def delete(self, memory_ids: Sequence[str], user_id: str | None = None,
               if_version: Callable[[str], bool] | None = None) -> int:
        """Delete the listed memories (only ``user_id``'s, if given); returns how many went.

        With ``if_version`` (one memory only), only if the memory exists and ``if_version``
        accepts its current version, read under its lock: VersionMismatch otherwise.
        """
        m = self.tables.memories
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
                    return self._delete(conn, [m.c.memory_id.in_(ids)], condition,
                                        locked=owners if self._locks.enabled else None)
            except _OwnersChanged as changed:
                owners |= changed.owners

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
        m = self.tables.memories
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
                condition: tuple[str, Callable[[str], bool]] | None = None,
                locked: set[str] | None = None) -> int:
        """Delete the memories in ``scope`` and record it in their history. With ``condition``
        (the one memory in scope, and what its version must satisfy), VersionMismatch unless
        the version read under the lock the delete then holds satisfies it. With ``locked``
        (the owners whose locks are held), _OwnersChanged, undoing the delete, if it found a
        memory of anyone else."""
        m, t = self.tables.memories, self.tables.topics
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
        removed = [memory_from_row(row, topics.get(row[0], []))
                   for row in conn.execute(sa.delete(m).where(*scope).returning(*self._memory_columns))]
        if locked is not None:
            strangers = {memory.user_id for memory in removed if memory.user_id is not None} - locked
            if strangers:
                raise _OwnersChanged(strangers)
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
        self.vectors.stored(conn, memories)
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
