"""Engines: one SQLAlchemy engine per configured database, tuned for its backend.

SQLite (a file, WAL) is the embedded default; PostgreSQL (psycopg 3) is the production
backend. Everything above this module is the same code for both.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

try:
    import fcntl
except ImportError:  # not POSIX: writers queue on SQLite's own lock alone
    fcntl = None

import sqlalchemy as sa
from sqlalchemy import event, exc

from .vector_extensions import load_sqlite_vec, register_sqlite_vec

log = logging.getLogger(__name__)

# How long a SQLite writer waits for another process's write lock before giving up. Writes
# are short transactions, so a wait this long only happens when something is badly wrong.
SQLITE_BUSY_TIMEOUT_S = 30
# How long PostgreSQL may take to accept a connection: fail fast when it is gone.
POSTGRES_CONNECT_TIMEOUT_S = 3

# Connections each process keeps open. The app runs handlers on one thread per connection
# (mnemo/bridge.py), each holding at most one connection at a time: a pool of that size never
# makes a thread wait, and with no overflow no connection is opened and closed per request,
# which costs a PostgreSQL server a process fork each time.
CONNECTIONS_PER_PROCESS = 10

# Execution option that marks a transaction as one that will write.
WRITES = "mnemo_writes"
# Execution option that marks a connection whose reads are each one statement: no transaction
# is begun for them (a single statement sees one snapshot by itself), saving the round trips.
SINGLE_STATEMENT_READS = "mnemo_single_statement_reads"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or cannot take the request right now."""


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url`` with the settings Mnemo relies on for that backend.

    ValueError, naming the problem, for a URL Mnemo cannot use.
    """
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError:
        raise ValueError(f"{url!r} is not a database URL: use sqlite:///PATH or "
                         "postgresql://USER@HOST/DB") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # A bare postgresql:// URL means psycopg2 to SQLAlchemy; Mnemo ships psycopg 3.
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername != "postgresql+psycopg":
            raise ValueError(f"unsupported PostgreSQL driver {parsed.drivername!r}: "
                             "use postgresql:// (psycopg 3)")
        return sa.create_engine(
            parsed,
            # No ping before each use: it is a round trip on every request. A connection that
            # died with the server fails on first use instead; SQLAlchemy then discards every
            # pooled connection, and reads are tried once more on a fresh one (see
            # unavailable_as_error), so a restarted server costs no request an error.
            pool_pre_ping=False,
            pool_size=CONNECTIONS_PER_PROCESS,
            max_overflow=0,
            pool_timeout=POSTGRES_CONNECT_TIMEOUT_S,
            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
        )
    raise ValueError(f"unsupported database URL {parsed.render_as_string()!r}: "
                     "use sqlite:///PATH or postgresql://USER@HOST/DB")


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise ValueError(f"unsupported SQLite driver {url.drivername!r}: use sqlite:///PATH")
    in_memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        # An in-memory database lives in one connection per thread, pooled its own way.
        **({} if in_memory else {"pool_size": CONNECTIONS_PER_PROCESS, "max_overflow": 0}),
    )

    _writer_queues[engine] = WriterQueue(None if in_memory else url.database)
    register_sqlite_vec()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transactions out of the driver's hands so that _on_begin decides how they start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        # FULL: a commit is on disk (WAL fsync) before the client hears of it.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()
        _record.info["sqlite_vec"] = load_sqlite_vec(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        options = conn.get_execution_options()
        if options.get(SINGLE_STATEMENT_READS, False):
            return  # the driver runs each statement in a transaction of its own
        if not options.get(WRITES, False):
            conn.exec_driver_sql("BEGIN")
            return
        # A writer takes SQLite's write lock when it begins. A deferred transaction that reads
        # first and writes later cannot wait for the lock (SQLite answers "database is locked"
        # at once to avoid deadlock), which is what breaks several worker processes.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_writer_queues: WeakKeyDictionary[sa.Engine, WriterQueue] = WeakKeyDictionary()


def writer_turn(engine: sa.Engine) -> contextlib.AbstractContextManager:
    """A context in which ``engine``'s next write transaction may run: its turn in the SQLite
    database's writer queue; nothing to wait for on PostgreSQL, whose writers lock rows."""
    queue = _writer_queues.get(engine)
    return queue.turn() if queue is not None else contextlib.nullcontext()


class WriterQueue:
    """Lets one writer at a time into a SQLite database, waking the next as soon as it is done.

    SQLite lets one transaction write at a time, and a writer that finds the database locked
    waits by sleeping in growing steps (up to 100 ms between tries), not until the lock is
    freed: under a steady stream of creates from several threads and worker processes, most of
    the time went to sleeping writers while the database sat idle (p99 above a second). Here
    writers queue instead on a lock that hands over at once: a thread lock within the process,
    then an exclusive flock on a file beside the database across processes. The kernel drops a
    dead process's flock, so a worker killed mid-write never blocks the others; SQLite's own
    lock and busy timeout still guard every write, queue or not (``mnemo import`` in another
    process, other programs).
    """

    def __init__(self, database_path: str | None):
        self._threads = threading.Lock()
        self._path = f"{database_path}-writer" if database_path and fcntl else None
        self._file = None
        self._pid = None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if not self._threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise DatabaseUnavailable("timed out waiting for the database's write lock")
        try:
            lock = self._lock_file()
            if lock is None:
                yield
                return
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self):
        if self._path is None:
            return None
        # Each process opens the file itself: a descriptor inherited through fork() would share
        # one lock between parent and child, and lock nothing.
        if self._pid != os.getpid():
            self._file = open(self._path, "ab")  # noqa: SIM115 - kept open for the process' life
            self._pid = os.getpid()
        return self._file


T = TypeVar("T")

# Most writes one group commit takes: bounds how long one transaction holds the write lock.
GROUP_COMMIT_LIMIT = 64


class _Submission(Generic[T]):
    __slots__ = ("item", "settled", "error", "leads")

    def __init__(self, item: T):
        self.item = item
        self.settled = threading.Event()
        self.error: BaseException | None = None
        self.leads = False  # woken to commit the next group, not because its own is done


class GroupCommit(Generic[T]):
    """Commits writes that arrive while another commit is under way together, in one transaction.

    A commit's cost is mostly its flush to disk (SQLite's WAL fsync, PostgreSQL's WAL flush) and,
    on SQLite, waiting for the one write lock; both are the same for one row or fifty. Each
    submitter blocks until its own write is committed (or has failed), so an answer is still
    only given for a write that is on disk. The first submitter to find no commit under way
    leads: it commits everything waiting, then hands the lead to the next waiter, so no
    thread commits for others indefinitely. ``write(connection, items)`` must write all the
    items; when it fails for a group, each item is tried alone, so that one bad item fails
    alone.
    """

    def __init__(self, begin: Callable[[], contextlib.AbstractContextManager[sa.Connection]],
                 write: Callable[[sa.Connection, list[T]], None]):
        self._begin = begin
        self._write = write
        self._lock = threading.Lock()
        self._waiting: list[_Submission[T]] = []
        self._leading = False

    def submit(self, item: T) -> None:
        mine = _Submission(item)
        with self._lock:
            self._waiting.append(mine)
            lead = not self._leading
            self._leading = True
        if not lead:
            mine.settled.wait()
            lead = mine.leads
        if lead:
            # The leader's own write is first in line: a new leader only ever starts with
            # nothing waiting, and a handed-over lead goes to the first waiter.
            with self._lock:
                group = self._waiting[:GROUP_COMMIT_LIMIT]
                del self._waiting[:GROUP_COMMIT_LIMIT]
            self._commit(group)
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.leads = True
                    successor.settled.set()
                else:
                    self._leading = False
        if mine.error is not None:
            raise mine.error

    def _commit(self, group: list[_Submission[T]]) -> None:
        try:
            with self._begin() as connection:
                self._write(connection, [submission.item for submission in group])
        except BaseException as error:
            if len(group) == 1:
                group[0].error = error
            else:
                for submission in group:
                    self._commit([submission])
                return
        for submission in group:
            submission.settled.set()


class DirectCommit(Generic[T]):
    """Commits each write in a transaction of its own, as it comes (the GroupCommit interface)."""

    def __init__(self, begin: Callable[[], contextlib.AbstractContextManager[sa.Connection]],
                 write: Callable[[sa.Connection, list[T]], None]):
        self._begin = begin
        self._write = write

    def submit(self, item: T) -> None:
        with self._begin() as connection:
            self._write(connection, [item])


def commits(engine: sa.Engine, begin: Callable[[], contextlib.AbstractContextManager[sa.Connection]],
            write: Callable[[sa.Connection, list[T]], None]) -> GroupCommit[T] | DirectCommit[T]:
    """How ``engine``'s writes of one kind are committed. SQLite writes one transaction at a
    time, so writes that arrive together are grouped into one. PostgreSQL runs concurrent
    transactions side by side and already flushes their commits to disk together: grouping
    them in the application would only serialise them."""
    if engine.dialect.name == "sqlite":
        return GroupCommit(begin, write)
    return DirectCommit(begin, write)


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode, waiting for the lock that takes as writers do.

    Switching to WAL needs an exclusive lock, and SQLite does not wait for it through the busy
    handler: processes that open a new database file at the same moment (workers starting
    together, `mnemo migrate` beside `mnemo serve`) would otherwise fail with "database is
    locked". The mode is kept in the file, so once one connection has switched, the others'
    pragma finds it done.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


# SQLite's page cache for one bulk write (KiB). The default (2 MiB) is far smaller than the
# pages a batch of thousands of memories dirties across its indexes: SQLite then spills them
# to the WAL mid-transaction and reads them back, slowing imports more the larger the table
# (docs/PERFORMANCE.md). A bulk write's connection gets this much for the batch and goes back
# to the default after it.
BULK_CACHE_KIB = 256 * 1024


def after_bulk_load(engine: sa.Engine, tables: list[str],
                    writing: Callable[[], contextlib.AbstractContextManager[sa.Connection]]) -> None:
    """Bring the planner's view of ``tables`` up to date after a bulk load.

    Both engines: ANALYZE, so the planner knows the tables' new sizes. PostgreSQL: VACUUM
    too. Until a page of a table is marked all-visible, PostgreSQL cannot answer from an index
    alone and reads the table's rows, so a count over a freshly imported table reads thousands
    of table pages until autovacuum comes by (docs/PERFORMANCE.md). VACUUM cannot run inside a
    transaction, so it gets an autocommit connection; SQLite's ANALYZE writes, so it takes its
    turn (``writing``) like any writer.
    """
    quote = engine.dialect.identifier_preparer.quote
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in tables:
                conn.exec_driver_sql(f"VACUUM (ANALYZE) {quote(table)}")
        return
    with writing() as conn:
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {quote(table)}")


@contextlib.contextmanager
def bulk_cache(connection: sa.Connection) -> Iterator[None]:
    """A page cache fit for a bulk write, on SQLite, for the duration (PostgreSQL sizes its
    shared buffers for the whole server)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    before = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(before)}")


def single_statement_reads(engine: sa.Engine) -> sa.Engine:
    """The engine for reads made of one statement each, run outside any explicit transaction."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    # SQLite's own autocommit is what its connections already do (isolation_level None);
    # the option only tells _on_begin not to begin a transaction.
    return engine.execution_options(**{SINGLE_STATEMENT_READS: True})


def several_statement_reads(engine: sa.Engine) -> sa.Engine:
    """The engine for reads of several statements (a total, then its page).

    SQLite: in a transaction, so every statement reads the one snapshot WAL gives it.
    PostgreSQL: in autocommit. At its READ COMMITTED level a transaction gives each statement
    a snapshot of its own anyway, so BEGIN and COMMIT would cost two round trips and change
    nothing that the statements see.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def snapshot_reads(engine: sa.Engine) -> sa.Engine:
    """The engine for reads of several statements that must all see one snapshot (a memory
    and its topics, read apart). SQLite's WAL gives a transaction one snapshot already."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="REPEATABLE READ")
    return engine


_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)

F = TypeVar("F", bound=Callable)


def unavailable_as_error(method: F | None = None, *, read: bool = False):
    """Turn 'cannot reach / cannot lock the database' failures into DatabaseUnavailable.

    A ``read`` that fails because its pooled connection had died (the database restarted
    since it was last used) is tried once more: the pool has been emptied by then, so the
    second try opens a fresh connection. Writes are never repeated, since a lost connection
    may have taken a commit with it. Anything else (a bug, a constraint violation) propagates
    unchanged.
    """
    if method is None:
        return functools.partial(unavailable_as_error, read=read)

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            try:
                return method(*args, **kwargs)
            except exc.DBAPIError as error:
                if not (read and error.connection_invalidated):
                    raise
                log.warning("database connection lost, reading again: %s", error.orig)
                return method(*args, **kwargs)
        except _UNAVAILABLE as error:
            log.warning("database unavailable: %s", error.orig if hasattr(error, "orig") else error)
            raise DatabaseUnavailable(str(error)) from error
        except exc.DBAPIError as error:
            if error.connection_invalidated:
                log.warning("database connection lost: %s", error.orig)
                raise DatabaseUnavailable(str(error)) from error
            raise

    return wrapper  # type: ignore[return-value]
