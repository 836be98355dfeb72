"""Concurrent writes to one user's data end as some serial order of them would.

Each round seeds a user with a few memories, then starts several writers at once on that
user, each doing one write every other write can race with: a create, an idempotent create,
an update, a delete, a bulk delete by id alone, an erase of the user, an optimize's
replacement, an import. When they are done, everything kept about the user must agree with
itself, as it would after the same writes one at a time: the memories, their topics, the
per-user summary, the history, the idempotency keys. The rounds are bounded in number and in
time, and run on both backends (on PostgreSQL at its default READ COMMITTED level).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from storage import (
    IdempotencyConflict,
    MemoriesChanged,
    Memory,
    MemoryQuery,
    VersionMismatch,
    utcnow,
)

ROUNDS = 300
WRITERS = 4
ROUND_TIMEOUT_S = 30
# However fast or slow the machine, the stress ends by itself.
TIME_BUDGET_S = 40


@dataclass
class Round:
    user: str
    seeded: list[Memory]
    created: list[str] = field(default_factory=list)
    erased: bool = False
    errors: list[BaseException] = field(default_factory=list)


def seed(repository, user: str, n: int = 3) -> list[Memory]:
    return [repository.create(memory=f"seed {i}", user_id=user, topics=[f"t{i}", "shared"])
            for i in range(n)]


# -- the writes -------------------------------------------------------------------------------

def create(repository, state: Round) -> None:
    memory = repository.create(memory="made", user_id=state.user, topics=["rt"])
    state.created.append(memory.memory_id)


def create_once(repository, state: Round) -> None:
    try:
        memory, _ = repository.create_once("key-1", memory="once", user_id=state.user, topics=["rt"])
    except IdempotencyConflict:
        return  # its memory was deleted or erased meanwhile: a serial order allows that
    state.created.append(memory.memory_id)


def update(repository, state: Round) -> None:
    if not state.seeded:
        return create(repository, state)
    target = random.choice(state.seeded)
    repository.update(target.memory_id, user_id=state.user, memory="changed", topics=["upd"])


def conditional_update(repository, state: Round) -> None:
    if not state.seeded:
        return create_once(repository, state)
    target = state.seeded[0]
    with contextlib.suppress(VersionMismatch):
        repository.update(target.memory_id, user_id=state.user, memory="if unchanged", topics=["cas"],
                          if_version=target.version.__eq__)


def delete(repository, state: Round) -> None:
    if not state.seeded:
        return import_batch(repository, state)
    repository.delete([random.choice(state.seeded).memory_id], state.user)


def bulk_delete_by_id_alone(repository, state: Round) -> None:
    repository.delete([m.memory_id for m in state.seeded[:2]])


def erase(repository, state: Round) -> None:
    repository.erase_user(state.user)
    state.erased = True


def optimize(repository, state: Round) -> None:
    read = repository.of_user(state.user)
    if not read:
        return
    now = utcnow()
    summary = Memory(str(uuid.uuid4()), "summary", ["sum"], state.user, None, None, now, now)
    try:
        repository.replace_memories(state.user, read, summary)
    except MemoriesChanged:
        return
    state.created.append(summary.memory_id)


def import_batch(repository, state: Round) -> None:
    now = utcnow()
    batch = [Memory(str(uuid.uuid4()), "imported", ["imp"], state.user, None, None, now, now)
             for _ in range(2)]
    repository.insert(batch)
    state.created.extend(m.memory_id for m in batch)


WRITES: list[Callable] = [create, create_once, update, conditional_update, delete,
                          bulk_delete_by_id_alone, erase, optimize, import_batch]


# -- what must hold after every round ---------------------------------------------------------

class TextDigestEmbedder:
    """A remote model in miniature (the worker embeds what writes queue), whose vector is a
    digest of the text: a stored vector shows which text it was made from."""

    model, dimension, inline = "test/text-digest", 8, False

    def embed(self, texts):
        return np.array([vector_of(text) for text in texts], dtype=np.float32)


def vector_of(text: str) -> np.ndarray:
    vector = np.frombuffer(uuid.uuid5(uuid.NAMESPACE_OID, text).bytes, dtype=np.uint16)[:8].astype(np.float32)
    return vector / np.linalg.norm(vector)


def embed_backlog(repository, state: Round) -> None:
    repository.embed_backlog(limit=3)


def assert_consistent(repository, state: Round) -> None:
    tables = repository.tables
    m, t, s, h, k = tables.memories, tables.topics, tables.user_stats, tables.history, tables.idempotency
    user = state.user
    with repository._engine.connect() as conn:
        memories = {row.memory_id: row for row in conn.execute(sa.select(m).where(m.c.user_id == user))}
        topics: dict[str, list[str]] = {}
        for row in conn.execute(sa.select(t).order_by(t.c.memory_id, t.c.position)):
            if row.memory_id in memories or row.user_id == user:
                topics.setdefault(row.memory_id, []).append(row.topic)
                assert row.user_id == user and row.memory_id in memories, "topic row of no memory"
        summary = conn.execute(sa.select(s).where(s.c.user_id == user)).first()
        history: dict[str, list] = {}
        for row in conn.execute(sa.select(h).where(h.c.user_id == user).order_by(h.c.memory_id, h.c.version)):
            history.setdefault(row.memory_id, []).append(row)
        keys = conn.execute(sa.select(k).where(k.c.user_id == user)).all()
        v, q = tables.vectors, tables.embedding_queue
        vectors = dict(conn.execute(sa.select(v.c.memory_id, v.c.embedding)
                                    .where(v.c.memory_id.in_(list(memories)))).all())
        queued = set(conn.execute(sa.select(q.c.memory_id)
                                  .where(q.c.memory_id.in_(list(memories)))).scalars())

    # The summary counts exactly the memories there are, and is there only while there are some.
    if memories:
        assert summary is not None, f"{len(memories)} memories but no summary row"
        assert summary.total_memories == len(memories)
        assert summary.last_memory_updated_at == max(row.updated_at for row in memories.values())
    else:
        assert summary is None, f"summary row says {summary.total_memories} of no memories"
    # Every memory's last version is what it holds; every other history ends in its delete.
    for memory_id, row in memories.items():
        versions = history.get(memory_id)
        assert versions, f"memory {memory_id} has no history"
        last = versions[-1]
        assert last.event != "delete" and last.memory == row.memory
        assert last.topics == topics.get(memory_id, [])
        assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    for memory_id, versions in history.items():
        if memory_id not in memories:
            assert versions[-1].event == "delete", f"history of {memory_id} outlives it with no delete"
    # An acknowledged memory is stored, or something that ran with it removed it.
    removers = state.erased or any(v[-1].event == "delete" for v in history.values())
    for memory_id in state.created:
        if memory_id not in memories and not removers:
            raise AssertionError(f"acknowledged memory {memory_id} is gone and nothing removed it")
        if memory_id not in memories and not history.get(memory_id):
            assert state.erased, f"memory {memory_id} vanished with its history but no erase ran"
    # Every memory is embedded, from the text it holds now, or waits for it; nothing else does
    # (a vector or queue entry of a gone memory would violate its foreign key).
    for memory_id, row in memories.items():
        assert memory_id in vectors or memory_id in queued, f"memory {memory_id} neither embedded nor queued"
        if memory_id in vectors:
            stored = vectors[memory_id]
            if isinstance(stored, bytes):  # SQLite's float32 bytes; PostgreSQL's real[] is a list
                stored = np.frombuffer(stored, dtype=np.float32)
            assert np.allclose(stored, vector_of(row.memory), atol=1e-6), \
                f"memory {memory_id}'s vector was made from another text than it holds"
    # The API's views agree with the rows.
    page = repository.list(MemoryQuery(user_id=user, limit=500))
    assert page.total_count == len(page.items) == len(memories)
    expected_topics = sorted({topic for memory_topics in topics.values() for topic in memory_topics})
    assert repository.topics(user) == expected_topics
    stats = repository.user_stats(limit=10, page=1, user_id=user)
    expected_stats = [(user, len(memories))] if memories else []
    assert [(x.user_id, x.total_memories) for x in stats.items] == expected_stats
    # An idempotency key belongs to a memory of the user that is stored, or was deleted (its
    # history says so); an erase leaves none.
    for key in keys:
        versions = history.get(key.memory_id)
        assert key.memory_id in memories or (versions and versions[-1].event == "delete"), \
            f"idempotency key {key.idempotency_key} outlives its memory's erase"


def run_round(repository, writes: list[Callable], seeded: int) -> Round:
    user = f"racer-{uuid.uuid4().hex[:8]}"
    state = Round(user, seed(repository, user, seeded))
    start = threading.Barrier(len(writes))

    def writer(write):
        try:
            start.wait(ROUND_TIMEOUT_S)
            write(repository, state)
        except BaseException as error:  # noqa: BLE001 - reported below, with the round
            state.errors.append(error)

    threads = [threading.Thread(target=writer, args=(write,)) for write in writes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ROUND_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    if state.errors:
        raise state.errors[0]
    return state


def stress(repository, pick: Callable[[random.Random], list[Callable]], rounds: int = ROUNDS) -> None:
    chooser = random.Random(1234)
    deadline = time.monotonic() + TIME_BUDGET_S
    for number in range(rounds):
        writes = pick(chooser)
        # A user with no memories yet has no summary row for writers to queue on.
        state = run_round(repository, writes, chooser.choice((0, 1, 3)))
        try:
            assert_consistent(repository, state)
        except AssertionError as error:
            names = ", ".join(w.__name__ for w in writes)
            raise AssertionError(f"round {number} ({names}): {error}") from None
        if time.monotonic() > deadline:
            break


@pytest.mark.slow
def test_an_erase_racing_creates_of_the_same_user_ends_as_a_serial_order(repository):
    # The adversarial run's loop: three creates and one erase of one user, started together.
    stress(repository, lambda _r: [create, create, create, erase])


@pytest.mark.slow
def test_any_writes_racing_on_one_user_end_as_a_serial_order(repository):
    stress(repository, lambda chooser: chooser.choices(WRITES, k=WRITERS))


@pytest.mark.slow
def test_writes_racing_the_embedding_worker_leave_every_memory_embedded_from_its_own_text_or_queued(
        database_url, table_name):
    from storage import Catalog, Database

    from .conftest import DB_ID, drop_tables

    database = Database.connect(DB_ID, database_url, [table_name], embedder=TextDigestEmbedder())
    database.prepare()
    catalog = Catalog([database])
    try:
        writes = [update, conditional_update, create, delete, erase, import_batch, optimize]
        stress(catalog.repository(),
               lambda chooser: [embed_backlog, embed_backlog, *chooser.choices(writes, k=2)], rounds=150)
    finally:
        catalog.dispose()
        drop_tables(database_url, table_name)


def test_an_erase_removes_the_users_idempotency_keys(repository):
    memory, _ = repository.create_once("k", memory="secret", user_id="u", topics=[])
    repository.erase_user("u")
    # The key is free again: the same request makes a new memory, another one is not "reused".
    again, replayed = repository.create_once("k", memory="secret", user_id="u", topics=[])
    assert not replayed and again.memory_id != memory.memory_id
    repository.erase_user("u")
    other, replayed = repository.create_once("k", memory="something else", user_id="u", topics=[])
    assert not replayed


def test_an_erase_leaves_other_users_idempotency_keys(repository):
    kept, _ = repository.create_once("k", memory="mine", user_id="keeper", topics=[])
    repository.create_once("k", memory="theirs", user_id="erased", topics=[])
    repository.erase_user("erased")
    again, replayed = repository.create_once("k", memory="mine", user_id="keeper", topics=[])
    assert replayed and again.memory_id == kept.memory_id


def test_keyed_creates_purging_each_others_expired_keys_never_deadlock(repository):
    # Each keyed create purges a batch of expired keys of any user. If A's purge takes B's
    # expired key while B's takes A's, and each then waits for its own, PostgreSQL breaks the
    # deadlock by failing one of them (a 503): so a create must wait for nothing once it holds
    # other users' keys. The interleaving is forced: A, having purged, waits for B's purge.
    keys = repository.tables.idempotency
    now = datetime.now(UTC)
    expired = [{"user_id": user, "idempotency_key": key, "request_digest": "x",
                "memory_id": str(uuid.uuid4()), "expires_at": now - timedelta(hours=hours)}
               for user, key, hours in [("A", "ka", 1), ("B", "kb", 2)]]
    expired += [{"user_id": "C", "idempotency_key": f"c{i}", "request_digest": "x",
                 "memory_id": str(uuid.uuid4()), "expires_at": now - timedelta(hours=3, seconds=-i)}
                for i in range(99)]
    with repository._engine.begin() as conn:
        conn.execute(sa.insert(keys), expired)
    a_purged, b_purged = threading.Event(), threading.Event()

    def after(_conn, _cursor, statement, *_args):
        # The purge: a delete of the keys a subquery picks by expiry (SKIP LOCKED on PostgreSQL).
        if statement.startswith("DELETE FROM") and keys.name in statement and "ORDER BY" in statement:
            if threading.current_thread().name == "A":
                a_purged.set()
                b_purged.wait(1)
            else:
                b_purged.set()

    results = {}

    def create(user):
        try:
            results[user] = repository.create_once(f"k{user.lower()}", memory="m", user_id=user)[1]
        except Exception as error:  # noqa: BLE001 - what failed is the assertion's message
            results[user] = repr(error)

    sa.event.listen(repository._engine, "after_cursor_execute", after)
    try:
        first = threading.Thread(target=create, args=("A",), name="A")
        first.start()
        a_purged.wait(ROUND_TIMEOUT_S)
        second = threading.Thread(target=create, args=("B",), name="B")
        second.start()
        first.join(ROUND_TIMEOUT_S)
        second.join(ROUND_TIMEOUT_S)
    finally:
        sa.event.remove(repository._engine, "after_cursor_execute", after)
    assert results == {"A": False, "B": False}


def test_a_delete_by_id_alone_racing_an_import_of_that_id_under_another_user_ends_as_a_serial_order(
        repository):
    # The owners of the ids are read before their locks are taken. A memory that appears under
    # another owner between that read and the delete must not be deleted without its owner's
    # lock (on PostgreSQL the delete starts over holding it too): either the delete came
    # first and the memory stays, counted, or it came second and B has nothing left.
    now = datetime.now(UTC)
    importer = threading.Thread(target=repository.insert, args=(
        [Memory("late", "imported meanwhile", [], "B", None, None, now, now)],))

    def after(_conn, _cursor, statement, *_args):
        if "DISTINCT" in statement and "user_id" in statement and not importer.is_alive() \
                and importer.ident is None:
            importer.start()
            # On PostgreSQL the import commits now; SQLite's writers take turns, so there it
            # waits for the delete to end.
            importer.join(2)

    sa.event.listen(repository._engine, "after_cursor_execute", after)
    try:
        deleted = repository.delete(["late"])
    finally:
        sa.event.remove(repository._engine, "after_cursor_execute", after)
    importer.join(ROUND_TIMEOUT_S)
    left = repository.list(MemoryQuery(user_id="B")).total_count
    summary = repository.user_stats(limit=10, page=1, user_id="B").items
    stats = [(x.user_id, x.total_memories) for x in summary]
    assert (deleted, left, stats) in ((1, 0, []), (0, 1, [("B", 1)]))
    assert len(repository.of_user("B")) == left
