"""The catalog: which databases Mnemo serves and which memory tables each one holds.

A request names a database with ``db_id`` and a memory table with ``table``; the catalog turns
those names into a repository or says precisely why it cannot. Only configured tables exist:
nothing a request says can create one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from . import migration
from .database import DatabaseUnavailable, create_engine, single_statement_reads, unavailable_as_error
from .family import DEFAULT_IDEMPOTENCY_TTL
from .migration import FamilyState, SchemaBehind, SchemaUnknown, Status
from .repository import MemoryRepository
from .schema import memory_tables
from .vector_extensions import PGVECTOR_MISSING, SQLITE_VEC_MISSING, has_sqlite_vec, pgvector_missing
from .vectors import Embedder


class CatalogError(Exception):
    """A ``db_id``/``table`` pair that names nothing Mnemo serves."""


class UnknownDatabase(CatalogError):
    pass


class UnknownTable(CatalogError):
    pass


class TableWithoutDatabase(CatalogError):
    pass


@dataclass
class Database:
    """One configured database: its engine and a repository per memory table."""

    db_id: str
    engine: sa.Engine
    repositories: dict[str, MemoryRepository] = field(default_factory=dict)
    metadata: sa.MetaData = field(default_factory=sa.MetaData)

    @classmethod
    def connect(cls, db_id: str, url: str, tables: list[str],
                idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL,
                embedder: Embedder | None = None) -> Database:
        engine = create_engine(url)
        database = cls(db_id=db_id, engine=engine)
        for name in tables:
            database.repositories[name] = MemoryRepository(
                engine, memory_tables(database.metadata, name), idempotency_ttl, embedder
            )
        return database

    @unavailable_as_error(read=True)
    def _touch(self) -> None:
        # A read of a memory table, not just `SELECT 1`: it proves the file (or the server)
        # can serve this database's data, through the same pool the requests use.
        memories = next(iter(self.repositories.values())).tables.memories
        with single_statement_reads(self.engine).connect() as connection:
            connection.execute(sa.select(memories.c.id).limit(1)).all()

    def ready(self) -> bool:
        """Whether the database answers a read now."""
        try:
            self._touch()
        except DatabaseUnavailable:
            return False
        return True

    @unavailable_as_error
    def schema_states(self) -> list[FamilyState]:
        """Where each memory table family stands against this Mnemo's migrations."""
        with self.engine.connect() as connection:
            return [migration.inspect_family(connection, name) for name in self.repositories]

    @unavailable_as_error
    def prepare(self, migrate: bool = False) -> list[FamilyState]:
        """Make every memory table family servable; the states they were in before.

        A family that does not exist yet is created (at head). One behind head, or whose
        search table has lost its trigger, is upgraded or repaired when ``migrate`` is true,
        and otherwise refused with SchemaBehind; one that no migration can bring to head is
        refused with SchemaUnknown.
        """
        states = self.schema_states()
        self._refuse(SchemaUnknown, [s for s in states if s.status in (Status.UNKNOWN, Status.INCOMPLETE)])
        if not migrate:
            self._refuse(SchemaBehind, [s for s in states
                                        if s.status in (Status.BEHIND, Status.UNVERSIONED, Status.UNSYNCED)],
                         "; run `mnemo migrate` (with the same settings), or `mnemo serve --migrate`")
        # Each family is re-read under the migration lock: another process may have got there first.
        before = [migration.upgrade(self.engine, state.table, create_only=not migrate)
                  if state.status is not Status.CURRENT else state for state in states]
        with migration.locked(self.engine) as connection:
            for repository in self.repositories.values():
                repository.vectors.prepare(connection)
        return before

    @unavailable_as_error
    def search_by_meaning_missing(self) -> str | None:
        """What this database lacks for search by meaning (what to install), or None."""
        with self.engine.connect() as connection:
            if self.engine.dialect.name == "postgresql":
                return PGVECTOR_MISSING if pgvector_missing(connection) else None
            return None if has_sqlite_vec(connection) else SQLITE_VEC_MISSING

    def watch_connections(self, taken: Callable[[], None], returned: Callable[[], None]) -> int | None:
        """Call ``taken`` each time a request takes a connection from the pool and ``returned``
        each time it gives one back; the pool's size (None for a pool without a fixed size)."""
        sa.event.listen(self.engine, "checkout", lambda *_: taken())
        # Also for a connection that died in use: it leaves the pool's count all the same.
        sa.event.listen(self.engine, "checkin", lambda *_: returned())
        size = getattr(self.engine.pool, "size", None)
        return size() if callable(size) else None

    def _refuse(self, error: type[Exception], states: list[FamilyState], advice: str = "") -> None:
        if states:
            raise error("; ".join(f"database {self.db_id!r}, table {state.table!r} {state.describe()}"
                                  for state in states) + advice)

    def dispose(self) -> None:
        self.engine.dispose()


class Catalog:
    def __init__(self, databases: list[Database]):
        if not databases:
            raise ValueError("the catalog needs at least one database")
        self.databases = {database.db_id: database for database in databases}
        self.default = databases[0]

    def repository(self, db_id: str | None = None, table: str | None = None) -> MemoryRepository:
        if db_id is None:
            if table is not None:
                raise TableWithoutDatabase(
                    "The db_id query parameter is required when passing a table"
                )
            database = self.default
        else:
            database = self.databases.get(db_id)
            if database is None:
                raise UnknownDatabase(f"No database found with id '{db_id}'")
        if table is None:
            return next(iter(database.repositories.values()))
        repository = database.repositories.get(table)
        if repository is None:
            raise UnknownTable(f"No database with id '{database.db_id}' has table '{table}'")
        return repository

    def tables(self) -> dict[str, list[str]]:
        """Each database's id and its memory tables' names, in configuration order."""
        return {db_id: list(database.repositories) for db_id, database in self.databases.items()}

    def embedding_backlog(self, db_id: str) -> dict[str, int]:
        """How many memories of each of ``db_id``'s tables wait for an embedding."""
        return {table: repository.embedding_backlog()
                for table, repository in self.databases[db_id].repositories.items()}

    def readiness(self) -> dict[str, bool]:
        """Database.ready for every database, by id."""
        return {db_id: database.ready() for db_id, database in self.databases.items()}

    def prepare(self, migrate: bool = False) -> None:
        """Database.prepare for every database, in configuration order."""
        for database in self.databases.values():
            database.prepare(migrate)

    def dispose(self) -> None:
        for database in self.databases.values():
            database.dispose()
