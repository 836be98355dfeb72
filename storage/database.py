"""Engines: one SQLAlchemy engine per configured database, tuned for its backend.

SQLite (a file, WAL) is the embedded default; PostgreSQL (psycopg 3) is the production
backend. Everything above this module is the same code for both.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc

log = logging.getLogger(__name__)

# How long a SQLite writer waits for another process's write lock before giving up. Writes
# are short transactions, so a wait this long only happens when something is badly wrong.
SQLITE_BUSY_TIMEOUT_S = 30
# How long PostgreSQL may take to accept a connection: fail fast when it is gone.
POSTGRES_CONNECT_TIMEOUT_S = 3

# Connections each process keeps open. Connexion's FlaskApp runs handlers on a pool of 10
# threads (a2wsgi's), each holding at most one connection at a time: a pool of that size never
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


def single_statement_reads(engine: sa.Engine) -> sa.Engine:
    """The engine for reads made of one statement each, run outside any explicit transaction."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    # SQLite's own autocommit is what its connections already do (isolation_level None);
    # the option only tells _on_begin not to begin a transaction.
    return engine.execution_options(**{SINGLE_STATEMENT_READS: True})


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
