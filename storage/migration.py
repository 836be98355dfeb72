"""Schema versions: Alembic owns the schema, one migration history per memory table family.

A family (``storage/schema.py``) is migrated on its own: the migrations in
``storage/migrations/versions`` take the family's name from ``Config.attributes["table"]``, and
its revision is kept in its own version table, ``<family>_alembic_version``, so families in one
database move independently and a new family can join a database at any time.

Every upgrade runs in one transaction that holds the database's migration lock (an advisory
lock on PostgreSQL, the write lock on SQLite), so several processes may start at once: one
migrates, the others wait and then find nothing left to do.
"""

from __future__ import annotations

import contextlib
import enum
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from .database import WRITES
from .schema import memory_tables, postgresql_search_objects, postgresql_search_repair

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision that describes what create_schema() made before Alembic owned the schema.
BASELINE = "0001"
# The family Alembic's own command line works on when -x table=... is not given.
DEFAULT_TABLE = "mnemo_memories"
# pg_advisory_xact_lock key that serialises Mnemo's migrations within one PostgreSQL database.
LOCK_KEY = 0x6D6E656D6F  # "mnemo"

# What create_schema() made for a family before migrations existed: table suffix -> columns.
_BASELINE_COLUMNS = {
    "": {"id", "memory_id", "memory", "memory_folded", "user_id", "agent_id", "team_id",
         "created_at", "updated_at"},
    "_topics": {"memory_id", "topic", "position", "user_id"},
    "_user_stats": {"user_id", "total_memories", "last_memory_updated_at"},
}
# Every table of a family at head, by suffix: the baseline's and those later revisions added.
_FAMILY_SUFFIXES = (*_BASELINE_COLUMNS, "_history", "_idempotency", "_changes", "_vectors",
                    "_embedding_queue", "_embedding_model")


class Status(enum.Enum):
    CURRENT = "at head"
    ABSENT = "not created yet"
    BEHIND = "behind head"
    UNVERSIONED = "created before Mnemo versioned its schema"
    UNKNOWN = "at a revision this Mnemo does not know"
    INCOMPLETE = "incomplete, with no recorded revision"
    UNSYNCED = "at head, but its search table is not kept in step"


@dataclass(frozen=True)
class FamilyState:
    """Where one memory table family stands against this Mnemo's migrations."""

    table: str
    status: Status
    revision: str | None
    head: str
    found: tuple[str, ...] = ()  # the family's tables that exist, for INCOMPLETE

    def describe(self) -> str:
        if self.status is Status.CURRENT:
            return f"at revision {self.revision} (head)"
        if self.status is Status.ABSENT:
            return f"not created yet (head is {self.head})"
        if self.status is Status.BEHIND:
            return f"at revision {self.revision}, behind head {self.head}"
        if self.status is Status.UNVERSIONED:
            return (f"has tables created before Mnemo versioned its schema; they match revision "
                    f"{BASELINE} and will be recorded as such (head is {self.head})")
        if self.status is Status.UNKNOWN:
            return (f"is at revision {self.revision}, which this Mnemo does not know: it was "
                    f"migrated by a newer Mnemo, so run that version (this one's head is {self.head})")
        if self.status is Status.UNSYNCED:
            return (f"is at revision {self.revision} (head), but the trigger that keeps its search "
                    "table in step with its memories is missing or disabled (a dump restored "
                    "without the trigger's function?)")
        return (f"is incomplete: only {', '.join(self.found)} exist, with no recorded revision; "
                "Mnemo will not guess what they hold: rename or drop them, or choose another "
                "table name")


class SchemaError(Exception):
    """A database whose tables cannot be served as they are."""


class SchemaBehind(SchemaError):
    """A family behind head: ``mnemo migrate`` will bring it up to date."""


class SchemaUnknown(SchemaError):
    """A family no migration of this Mnemo can bring to head."""


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    return scripts().get_current_head()


def version_table(table: str) -> str:
    return f"{table}_alembic_version"


def family_tables(table: str) -> tuple[str, ...]:
    """Every table of the family at head."""
    return tuple(table + suffix for suffix in _FAMILY_SUFFIXES)


def baseline_tables(table: str) -> tuple[str, ...]:
    """The family's tables as revision 0001 made them."""
    return tuple(table + suffix for suffix in _BASELINE_COLUMNS)


def family_metadata(table: str) -> sa.MetaData:
    """The models of one family, as storage/schema.py declares them."""
    metadata = sa.MetaData()
    memory_tables(metadata, table)
    return metadata


def comparison_filters(table: str) -> dict:
    """``include_name`` that keeps Alembic's comparison to one family's ordinary tables.

    The search table of each backend (SQLite's FTS5 virtual table with its shadow tables and
    triggers, PostgreSQL's table with its trigram index and trigger: schema._search_index) is
    outside what Alembic compares; the migrations create it and the tests compare it directly.
    """
    tables = set(family_tables(table))

    def include_name(name, type_, _parents) -> bool:
        return name in tables if type_ == "table" else True

    return {"include_name": include_name}


def alembic_config(connection: sa.Connection, table: str) -> Config:
    """Alembic configuration that migrates ``table``'s family over ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["table"] = table
    return config


@contextlib.contextmanager
def locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a write transaction that holds the database's migration lock."""
    with engine.connect() as connection:
        connection.execution_options(**{WRITES: True})  # SQLite: BEGIN IMMEDIATE
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            yield connection


def inspect_family(connection: sa.Connection, table: str) -> FamilyState:
    """Where ``table``'s family stands, read from its version table and its tables."""
    current = head()
    context = MigrationContext.configure(connection, opts={"version_table": version_table(table)})
    revision = context.get_current_revision()
    if revision is not None:
        try:
            scripts().get_revision(revision)
        except CommandError:  # no such revision
            return FamilyState(table, Status.UNKNOWN, revision, current)
        status = Status.CURRENT if revision == current else Status.BEHIND
        if status is Status.CURRENT and not _search_in_step(connection, table):
            status = Status.UNSYNCED
        return FamilyState(table, status, revision, current)
    inspector = sa.inspect(connection)
    found = tuple(name for name in family_tables(table) if inspector.has_table(name))
    if not found:
        return FamilyState(table, Status.ABSENT, None, current)
    if found == baseline_tables(table) and _is_baseline(connection, inspector, table):
        return FamilyState(table, Status.UNVERSIONED, None, current, found)
    return FamilyState(table, Status.INCOMPLETE, None, current, found)


def _search_in_step(connection: sa.Connection, table: str) -> bool:
    """Whether the family's search table, its index and its trigger are there, the trigger
    firing. SQLite keeps its triggers in the database file with the tables, so only a
    PostgreSQL dump of some tables can lose one (``pg_dump --table`` leaves out the function
    it calls)."""
    if connection.dialect.name != "postgresql":
        return True
    search, trigger, index = postgresql_search_objects(table)
    return connection.execute(sa.text(
        "SELECT to_regclass(quote_ident(:search)) IS NOT NULL "
        "AND (to_regclass(quote_ident(:index)) IS NOT NULL "
        "     OR NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm')) "
        "AND EXISTS (SELECT FROM pg_trigger WHERE tgrelid = to_regclass(quote_ident(:table)) "
        # 'O' fires in ordinary sessions, 'A' always; 'D' never, 'R' only under replication.
        "AND tgname = :trigger AND tgenabled IN ('O', 'A'))"),
        {"search": search, "index": index, "table": table, "trigger": trigger}).scalar_one()


def _is_baseline(connection: sa.Connection, inspector, table: str) -> bool:
    for suffix, columns in _BASELINE_COLUMNS.items():
        if {column["name"] for column in inspector.get_columns(table + suffix)} != columns:
            return False
    if connection.dialect.name == "sqlite":
        return inspector.has_table(f"{table}_search")
    return any(index["name"] == f"ix_{table}_search" for index in inspector.get_indexes(table))


def upgrade(engine: sa.Engine, table: str, create_only: bool = False) -> FamilyState:
    """Bring ``table``'s family to head: create it, record pre-migration tables as the
    baseline, or run the migrations it lacks. Its state before; SchemaUnknown if it cannot,
    SchemaBehind if ``create_only`` and it exists behind head."""
    with locked(engine) as connection:
        before = inspect_family(connection, table)
        if before.status in (Status.UNKNOWN, Status.INCOMPLETE):
            raise SchemaUnknown(before.describe())
        if create_only and before.status not in (Status.ABSENT, Status.CURRENT):
            raise SchemaBehind(before.describe())
        if before.status is Status.UNVERSIONED:
            MigrationContext.configure(
                connection, opts={"version_table": version_table(table)}
            ).stamp(scripts(), BASELINE)
        if before.status not in (Status.CURRENT, Status.UNSYNCED):
            command.upgrade(alembic_config(connection, table), "head")
        # Also after an upgrade: a restored family behind head may have lost its trigger too.
        if not _search_in_step(connection, table):
            for statement in postgresql_search_repair(table):
                connection.exec_driver_sql(statement)
    return before


def downgrade(engine: sa.Engine, table: str, revision: str) -> None:
    """Take ``table``'s family back to ``revision`` ("base": drop it, version table and all)."""
    with locked(engine) as connection:
        command.downgrade(alembic_config(connection, table), revision)
        if revision == "base":
            quoted = connection.dialect.identifier_preparer.quote(version_table(table))
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {quoted}"))
