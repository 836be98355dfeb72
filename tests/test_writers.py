"""How writes get their turn: grouped commits and SQLite's writer queue.

SQLite writes one transaction at a time; Mnemo queues its writers instead of letting them poll
for the lock, and commits creates that arrive together in one transaction. None of that may
change what is stored or what a caller is told.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import threading
import time

import pytest
import sqlalchemy as sa

from storage.database import (
    BULK_CACHE_KIB,
    GroupCommit,
    WriterQueue,
    bulk_cache,
    create_engine,
    writer_turn,
)

WRITERS = 8
CREATES_EACH = 25


def test_concurrent_creates_are_each_stored_whole_and_counted(repository):
    def write(writer):
        for n in range(CREATES_EACH):
            repository.create(memory=f"memory {writer}-{n}", user_id=f"user-{writer % 3}",
                              topics=[f"writer-{writer}", f"n-{n}"])

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = repository.scan(None, WRITERS * CREATES_EACH + 1)
    assert len(stored) == WRITERS * CREATES_EACH
    for memory in stored:
        writer, n = memory.memory.removeprefix("memory ").split("-")
        assert memory.topics == [f"writer-{writer}", f"n-{n}"]
        assert memory.user_id == f"user-{int(writer) % 3}"
    counts = {stats.user_id: stats.total_memories
              for stats in repository.user_stats(limit=10, page=1).items}
    expected = {f"user-{u}": sum(CREATES_EACH for w in range(WRITERS) if w % 3 == u) for u in range(3)}
    assert counts == expected


class RecordingWrites:
    """A write that records the groups it is given; the first group is held until released,
    so that the submissions arriving meanwhile queue up behind it."""

    def __init__(self, fails_on=()):
        self.groups: list[list[int]] = []
        self.fails_on = set(fails_on)
        self.release_first = threading.Event()

    @contextlib.contextmanager
    def begin(self):
        yield None

    def write(self, _connection, items):
        if not self.groups:
            self.groups.append(list(items))
            self.release_first.wait(5)
            return
        self.groups.append(list(items))
        if self.fails_on & set(items):
            raise ValueError(f"cannot write {sorted(self.fails_on & set(items))}")


def submit_all(commit, items, release):
    errors: dict[int, BaseException] = {}

    def submit(item):
        try:
            commit.submit(item)
        except ValueError as error:
            errors[item] = error

    first = threading.Thread(target=submit, args=(items[0],))
    first.start()
    time.sleep(0.05)
    others = [threading.Thread(target=submit, args=(item,)) for item in items[1:]]
    for thread in others:
        thread.start()
    time.sleep(0.1)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
        assert not thread.is_alive(), "a submitter was never answered"
    return errors


def test_writes_arriving_during_a_commit_share_the_next_one():
    writes = RecordingWrites()
    commit = GroupCommit(writes.begin, writes.write)
    errors = submit_all(commit, list(range(10)), writes.release_first)
    assert errors == {}
    assert writes.groups[0] == [0]
    assert sorted(writes.groups[1]) == list(range(1, 10))
    assert len(writes.groups) == 2


def test_a_write_that_fails_in_a_group_fails_alone():
    writes = RecordingWrites(fails_on={4})
    commit = GroupCommit(writes.begin, writes.write)
    errors = submit_all(commit, list(range(8)), writes.release_first)
    assert list(errors) == [4]
    assert "cannot write [4]" in str(errors[4])
    committed = {item for group in writes.groups if not (set(group) & {4}) for item in group}
    assert committed == set(range(8)) - {4}


def test_every_submitter_is_answered_under_a_steady_stream():
    committed: list[int] = []
    lock = threading.Lock()

    def write(_connection, items):
        time.sleep(0.001)
        with lock:
            committed.extend(items)

    commit = GroupCommit(contextlib.nullcontext, write)
    threads = [threading.Thread(target=lambda base=base: [commit.submit(base + n) for n in range(50)])
               for base in range(0, 800, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert sorted(committed) == sorted(base + n for base in range(0, 800, 100) for n in range(50))


@pytest.fixture
def sqlite_file(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/memories.db")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield engine, tmp_path / "memories.db-writer"
    engine.dispose()


def test_a_writer_waits_its_turn_while_another_process_writes_then_writes(sqlite_file):
    engine, lock_path = sqlite_file
    with writer_turn(engine):
        pass  # the queue's lock file now exists
    done = threading.Event()

    def write():
        with writer_turn(engine), engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        done.set()

    # Another process's writer holds the queue (a second open file stands for it: flock
    # locks belong to an open file, so it excludes this process's as another process's would).
    with open(lock_path, "ab") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.3), "a writer went ahead while another process held the queue"
        fcntl.flock(other_process, fcntl.LOCK_UN)
    assert done.wait(5)
    writer.join()
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1



def test_a_forked_worker_queues_on_a_lock_of_its_own(tmp_path):
    # A lock file opened before fork() would be shared with the child and exclude nothing.
    queue = WriterQueue(str(tmp_path / "memories.db"))
    parent_file = queue._lock_file()
    fcntl.flock(parent_file, fcntl.LOCK_EX)
    try:
        context = multiprocessing.get_context("fork")
        answer = context.Queue()
        child = context.Process(target=_child_tries_the_queue, args=(queue, answer))
        child.start()
        assert answer.get(timeout=10) == "waited"
        child.join(10)
    finally:
        fcntl.flock(parent_file, fcntl.LOCK_UN)


def _child_tries_the_queue(queue: WriterQueue, answer) -> None:
    try:
        fcntl.flock(queue._lock_file(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        answer.put("waited")
    else:
        answer.put("went ahead")


def test_a_bulk_write_gets_a_large_page_cache_and_gives_it_back(sqlite_file):
    engine, _ = sqlite_file
    with engine.begin() as connection:
        default = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        with bulk_cache(connection):
            during = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        after = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    assert during == -BULK_CACHE_KIB
    assert after == default
