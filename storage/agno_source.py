"""Reading the memory table of an Agno app's database (its ``SqliteDb`` or ``PostgresDb``).

Only ever read: SQLite is opened read-only and PostgreSQL runs read-only transactions, so no
mistake here can change the application's data.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from urllib.request import pathname2url

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

POSTGRES_SCHEMA = "ai"  # PostgresDb's default db_schema
REQUIRED = ("memory_id", "memory", "created_at")
COLUMNS = ("memory_id", "memory", "topics", "user_id", "agent_id", "team_id", "created_at", "updated_at")


class SourceUnavailable(Exception):
    """The Agno database cannot be read."""


class NotAnAgnoMemoryTable(ValueError):
    """The URL, table or schema given do not name an Agno memory table."""


def read_only_engine(url: str) -> sa.Engine:
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            raise NotAnAgnoMemoryTable("--from needs the file of the Agno SQLite database: sqlite:///PATH")
        if not os.path.isfile(path):
            raise NotAnAgnoMemoryTable(f"no Agno SQLite database at {path}: no such file")
        uri = f"file:{pathname2url(os.path.abspath(path))}?mode=ro"
        return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=30),
                                poolclass=NullPool)
    if backend == "postgresql":
        # Whichever driver the Agno app uses (its URL may say psycopg2), reading needs only
        # psycopg 3, which Mnemo ships.
        parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, poolclass=NullPool, connect_args={"connect_timeout": 3})
        return engine.execution_options(postgresql_readonly=True)
    raise NotAnAgnoMemoryTable(f"unsupported Agno database URL {parsed.render_as_string()!r}: "
                               "use sqlite:///PATH or postgresql://USER@HOST/DB")


def _parse(url: str) -> sa.URL:
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError:
        raise NotAnAgnoMemoryTable(f"{url!r} is not a database URL: use sqlite:///PATH or "
                                   "postgresql://USER@HOST/DB") from None


class AgnoMemorySource:
    """The rows of one Agno memory table, a page at a time."""

    def __init__(self, url: str, table: str, schema: str | None = None):
        parsed = _parse(url)
        if schema is None and parsed.get_backend_name() == "postgresql":
            schema = POSTGRES_SCHEMA
        self.where = parsed.render_as_string(hide_password=True)
        self.name = f"{schema}.{table}" if schema else table
        self.engine = read_only_engine(url)
        try:
            with self._reading():
                self.table = sa.Table(table, sa.MetaData(schema=schema), autoload_with=self.engine)
        except sa.exc.NoSuchTableError:
            self.engine.dispose()
            raise NotAnAgnoMemoryTable(f"{self.where} has no table {self.name}") from None
        missing = [column for column in REQUIRED if column not in self.table.c]
        if missing:
            self.engine.dispose()
            raise NotAnAgnoMemoryTable(f"{self.name} in {self.where} is not an Agno memory table: "
                                       f"it has no {', '.join(missing)} column")

    def pages(self, size: int) -> Iterator[list[sa.Row]]:
        """Rows by memory_id, ``size`` at a time: a short read per page, never one transaction
        held open on the application's database for the whole copy."""
        source = self.table
        columns = [(source.c[name] if name in source.c else sa.null()).label(name) for name in COLUMNS]
        statement = sa.select(*columns).order_by(source.c.memory_id).limit(size)
        after = None
        while True:
            page = statement if after is None else statement.where(source.c.memory_id > after)
            with self._reading(), self.engine.connect() as conn:
                rows = conn.execute(page).all()
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = rows[-1].memory_id

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _reading(self):
        try:
            yield
        except sa.exc.DBAPIError as error:
            raise SourceUnavailable(f"cannot read the Agno database {self.where}: {error.orig}") from error
