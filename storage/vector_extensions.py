"""The database extensions search by meaning runs on: sqlite-vec in SQLite, pgvector in
PostgreSQL. Without them Mnemo still serves everything else; search by meaning then answers
an error saying what to install."""

from __future__ import annotations

import ctypes
import logging
import sqlite3
import threading

import sqlalchemy as sa

log = logging.getLogger(__name__)

PGVECTOR_MISSING = ("this PostgreSQL server has no pgvector extension: install pgvector "
                    "(https://github.com/pgvector/pgvector, or your distribution's "
                    "postgresql-<version>-pgvector package), then run `mnemo migrate`")
SQLITE_VEC_MISSING = ("SQLite cannot load the sqlite-vec extension here (pip install sqlite-vec, and a "
                      "Python whose sqlite3 can load extensions)")

_registered = threading.Lock()
_auto_extension: bool | None = None


def register_sqlite_vec() -> None:
    """Make sqlite-vec's functions part of every SQLite connection opened from now on, where
    the sqlite3 module cannot load extensions itself (Python built without
    ``enable_load_extension``): SQLite's own ``sqlite3_auto_extension``, called on the
    library the sqlite3 module uses, registers it for each new connection."""
    global _auto_extension
    with _registered:
        if _auto_extension is not None or hasattr(sqlite3.Connection, "enable_load_extension"):
            return
        _auto_extension = False
        try:
            import sqlite_vec

            library = ctypes.CDLL("libsqlite3.so.0")
            entry = ctypes.CDLL(sqlite_vec.loadable_path() + ".so").sqlite3_vec_init
            library.sqlite3_auto_extension.argtypes = [ctypes.c_void_p]
            _auto_extension = library.sqlite3_auto_extension(ctypes.cast(entry, ctypes.c_void_p)) == 0
        except (ImportError, OSError, AttributeError) as error:
            log.warning("sqlite-vec is not available (%s): search by meaning is off on SQLite", error)


def load_sqlite_vec(dbapi_connection: sqlite3.Connection) -> bool:
    """Give a new SQLite connection sqlite-vec's functions; whether it has them."""
    if hasattr(dbapi_connection, "enable_load_extension"):
        try:
            import sqlite_vec

            dbapi_connection.enable_load_extension(True)
            try:
                sqlite_vec.load(dbapi_connection)
            finally:
                dbapi_connection.enable_load_extension(False)
        except (ImportError, sqlite3.Error) as error:
            log.warning("sqlite-vec could not be loaded (%s): search by meaning is off on SQLite", error)
            return False
    try:
        dbapi_connection.execute("SELECT vec_version()").fetchone()
    except sqlite3.Error:
        return False
    return True


def has_sqlite_vec(connection: sa.Connection) -> bool:
    return bool(connection.info.get("sqlite_vec", False))


def pgvector_missing(connection: sa.Connection) -> bool:
    """Whether this PostgreSQL database lacks the pgvector extension (installed in it)."""
    return connection.execute(
        sa.text("SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector')")).scalar_one()


def create_pgvector(connection: sa.Connection) -> bool:
    """Create pgvector in this database if its server offers it; whether it is there now."""
    offered = connection.execute(sa.text(
        "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector')")).scalar_one()
    if offered:
        connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    return not pgvector_missing(connection)
