"""Every table Mnemo keeps, defined once in SQLAlchemy Core.

A *memory table* is a family of tables that share one name prefix: the memories
themselves, their topics (one row per memory and topic, so a topic filter is an index lookup
instead of a LIKE over JSON text), a per-user summary that the same transaction as each write
keeps in step (so statistics never read every memory), the history of every memory (one row
per version, written by the same transaction as the change, kept after a delete), and the
idempotency keys of recent creates, and a count of the write transactions committed (so a
costly count can be remembered until the data changes). Several families can live in one database; each is
created only from configuration, never by a request, and by the Alembic migrations in
``storage/migrations``, which must make exactly what these models declare (a test compares
them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Identifiers and topics are indexed; PostgreSQL refuses B-tree entries over ~2.7 kB, so the
# API caps them (the contract says so) and the columns say the same.
IDENTIFIER_LENGTH = 255


class UtcDateTime(sa.types.TypeDecorator):
    """An instant with microsecond precision, always handed back as an aware UTC datetime.

    PostgreSQL stores a real ``timestamptz``. SQLite has no time type: SQLAlchemy stores a
    fixed-width ISO text, which sorts as time does only if every value is in one zone, so
    values are normalised to naive UTC on the way in.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect, coltype):
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite's text is naive UTC: parsed with its zone in one step, it costs a seventh of
        # SQLAlchemy's parse followed by process_result_value's replace(tzinfo=...), which was
        # a third of what reading a page of memories cost.
        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            return None if value is None else parse(value + "+00:00")

        return process


def _postgresql_search_ddl(name: str) -> list[str]:
    """PostgreSQL's search table for family ``name``: each memory's row id and folded text,
    under a pg_trgm GIN index, kept in step with the memories by a trigger.

    The index could sit on the memory table itself, but an exact count re-checks the text of
    every row the index proposes, and for a word in a third of all memories that reads nearly
    every page of the table. A table of the folded texts alone has less than half as many
    (202 MB against 441 MB at 1,000,000 memories; docs/PERFORMANCE.md, "Counting search
    matches").
    """
    memories, search, sync, index = _postgresql_names(name)
    return [
        f"CREATE TABLE {search} {_SEARCH_COLUMNS}",
        _if_trigrams(f"CREATE INDEX {index} ON {search} USING gin (memory_folded gin_trgm_ops)"),
        _postgresql_words_index(name),
        f"CREATE FUNCTION {sync}() {_sync_function_body(search)}",
        f"CREATE TRIGGER {sync} {_sync_trigger_clause(memories, sync)}",
    ]


def postgresql_search_repair(name: str) -> list[str]:
    """Put back whatever of _postgresql_search_ddl is missing (a restore of ``pg_dump --table``
    lacks the function, so the trigger too), enable a disabled trigger, and bring the search
    table back in step with the memories.

    The strongest lock it takes on the memory table is the trigger's (SHARE ROW EXCLUSIVE, held
    to the commit): writes wait, so none slips between the trigger and the copy, and reads go
    on. Dropping and re-creating a trigger would lock out reads as well.
    """
    memories, search, sync, index = _postgresql_names(name)
    _, trigger, _ = postgresql_search_objects(name)
    return [
        f"CREATE TABLE IF NOT EXISTS {search} {_SEARCH_COLUMNS}",
        _if_trigrams(f"CREATE INDEX IF NOT EXISTS {index} ON {search} "
                     "USING gin (memory_folded gin_trgm_ops)"),
        _postgresql_words_index(name, if_not_exists=True),
        f"CREATE OR REPLACE FUNCTION {sync}() {_sync_function_body(search)}",
        f"DO $repair$ BEGIN "
        f"IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = '{memories}'::regclass "
        f"AND tgname = '{trigger}') THEN ALTER TABLE {memories} ENABLE TRIGGER {sync}; "
        f"ELSE CREATE TRIGGER {sync} {_sync_trigger_clause(memories, sync)}; "
        f"END IF; END $repair$",
        f"INSERT INTO {search} AS s (id, memory_folded) SELECT id, memory_folded FROM {memories} "
        f"ON CONFLICT (id) DO UPDATE SET memory_folded = EXCLUDED.memory_folded "
        f"WHERE s.memory_folded IS DISTINCT FROM EXCLUDED.memory_folded",
        f"DELETE FROM {search} s WHERE NOT EXISTS (SELECT FROM {memories} m WHERE m.id = s.id)",
        f"ANALYZE {search}",
    ]


_SEARCH_COLUMNS = "(id BIGINT PRIMARY KEY, memory_folded TEXT NOT NULL)"


def _if_trigrams(statement: str) -> str:
    """``statement``, run only where pg_trgm is installed: a server without it (a minimal
    build) serves substring search by scanning the search table instead."""
    return (f"DO $trigrams$ BEGIN IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm') "
            f"THEN EXECUTE $statement${statement}$statement$; END IF; END $trigrams$")

# The text search configuration of the word index: 'simple' splits words and nothing else
# (no stemming, no stop words, so every language is treated alike), and the text it reads is
# already case-folded by Python, which PostgreSQL's lower() under the C locale is not.
WORDS_CONFIGURATION = "simple"


def postgresql_words_vector(column: str) -> str:
    """The expression the word index holds, written as every query must write it to use it."""
    return f"to_tsvector('{WORDS_CONFIGURATION}'::regconfig, {column})"


def _postgresql_words_index(name: str, if_not_exists: bool = False) -> str:
    """A GIN index of the words of each memory's folded text, which hybrid search ranks by
    (ts_rank_cd) beside meaning."""
    _, search, _, _ = _postgresql_names(name)
    exists = "IF NOT EXISTS " if if_not_exists else ""
    return (f'CREATE INDEX {exists}"ix_{name}_words" ON {search} '
            f"USING gin (({postgresql_words_vector('memory_folded')}))")


def _sync_function_body(search: str) -> str:
    return (f"RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP = 'INSERT' THEN "
            f"INSERT INTO {search} (id, memory_folded) VALUES (NEW.id, NEW.memory_folded); "
            f"ELSIF TG_OP = 'UPDATE' THEN "
            f"UPDATE {search} SET memory_folded = NEW.memory_folded WHERE id = NEW.id; "
            f"ELSE DELETE FROM {search} WHERE id = OLD.id; "
            f"END IF; RETURN NULL; END $$")


def _sync_trigger_clause(memories: str, sync: str) -> str:
    return (f"AFTER INSERT OR UPDATE OF memory_folded OR DELETE ON {memories} "
            f"FOR EACH ROW EXECUTE FUNCTION {sync}()")


def _postgresql_search_drop(name: str) -> list[str]:
    """What undoes _postgresql_search_ddl (the trigger goes with its function)."""
    _, search, sync, _ = _postgresql_names(name)
    return [f"DROP FUNCTION IF EXISTS {sync}() CASCADE", f"DROP TABLE IF EXISTS {search}"]


def postgresql_search_objects(name: str) -> tuple[str, str, str]:
    """The names of family ``name``'s search table, its trigger (and the trigger's function),
    and its index on PostgreSQL."""
    return f"{name}_search", f"{name}_search_sync", f"ix_{name}_search"


def _postgresql_names(name: str) -> tuple[str, ...]:
    """The memory table, search table, trigger function and index, quoted: PostgreSQL folds an
    unquoted name to lower case, and a family's name may have capitals."""
    return tuple(f'"{n}"' for n in (name, *postgresql_search_objects(name)))


def _sqlite_search_ddl(name: str) -> list[str]:
    """SQLite's search table for family ``name``: an FTS5 trigram index over the folded text,
    which stores none of it (``content=``), kept in step with the memories by triggers."""
    return [
        f"CREATE VIRTUAL TABLE {name}_search USING fts5(memory_folded, content='{name}', "
        f"content_rowid='id', tokenize='trigram case_sensitive 1')",
        f"CREATE TRIGGER {name}_search_insert AFTER INSERT ON {name} BEGIN "
        f"INSERT INTO {name}_search(rowid, memory_folded) VALUES (new.id, new.memory_folded); END",
        f"CREATE TRIGGER {name}_search_delete AFTER DELETE ON {name} BEGIN "
        f"INSERT INTO {name}_search({name}_search, rowid, memory_folded) "
        f"VALUES ('delete', old.id, old.memory_folded); END",
        f"CREATE TRIGGER {name}_search_update AFTER UPDATE OF memory_folded ON {name} BEGIN "
        f"INSERT INTO {name}_search({name}_search, rowid, memory_folded) "
        f"VALUES ('delete', old.id, old.memory_folded); "
        f"INSERT INTO {name}_search(rowid, memory_folded) VALUES (new.id, new.memory_folded); END",
    ]


def sqlite_words_ddl(name: str) -> list[str]:
    """SQLite's word index for family ``name``: an FTS5 table of the words of the folded text
    (Unicode-aware tokenizer, diacritics kept as written), storing none of the text, which
    hybrid search ranks by (bm25) beside meaning; kept in step by triggers like the search
    table."""
    words = f"{name}_words"
    return [
        f"CREATE VIRTUAL TABLE {words} USING fts5(memory_folded, content='{name}', "
        f"content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
        f"CREATE TRIGGER {words}_insert AFTER INSERT ON {name} BEGIN "
        f"INSERT INTO {words}(rowid, memory_folded) VALUES (new.id, new.memory_folded); END",
        f"CREATE TRIGGER {words}_delete AFTER DELETE ON {name} BEGIN "
        f"INSERT INTO {words}({words}, rowid, memory_folded) "
        f"VALUES ('delete', old.id, old.memory_folded); END",
        f"CREATE TRIGGER {words}_update AFTER UPDATE OF memory_folded ON {name} BEGIN "
        f"INSERT INTO {words}({words}, rowid, memory_folded) "
        f"VALUES ('delete', old.id, old.memory_folded); "
        f"INSERT INTO {words}(rowid, memory_folded) VALUES (new.id, new.memory_folded); END",
    ]


def _search_index(memories: sa.Table) -> None:
    """A table that answers substring search on the folded text without reading every memory.

    ``{name}_search`` on both backends, made by the DDL above: Alembic's models cannot declare
    an FTS5 table or a trigger, so the migrations write the same statements out and the tests
    compare what each creates. Both indexes need 3 characters or more; shorter needles are
    matched by scanning.
    """
    name = memories.name
    for dialect, statements in (("sqlite", _sqlite_search_ddl(name) + sqlite_words_ddl(name)),
                                ("postgresql", _postgresql_search_ddl(name))):
        for statement in statements:
            sa.event.listen(memories, "after_create", sa.DDL(statement).execute_if(dialect=dialect))
    sa.event.listen(memories, "before_create", sa.DDL(
        "DO $trigrams$ BEGIN IF EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm') "
        "THEN CREATE EXTENSION IF NOT EXISTS pg_trgm; END IF; END $trigrams$"
    ).execute_if(dialect="postgresql"))
    sa.event.listen(memories, "after_drop",
                    sa.DDL(f"DROP TABLE IF EXISTS {name}_search").execute_if(dialect="sqlite"))
    sa.event.listen(memories, "after_drop",
                    sa.DDL(f"DROP TABLE IF EXISTS {name}_words").execute_if(dialect="sqlite"))
    for statement in _postgresql_search_drop(name):
        sa.event.listen(memories, "before_drop", sa.DDL(statement).execute_if(dialect="postgresql"))


@dataclass(frozen=True)
class MemoryTables:
    """The tables of one memory table family."""

    name: str
    memories: sa.Table
    topics: sa.Table
    user_stats: sa.Table
    history: sa.Table
    idempotency: sa.Table
    changes: sa.Table
    vectors: sa.Table
    embedding_queue: sa.Table
    embedding_model: sa.Table


def memory_tables(metadata: sa.MetaData, name: str) -> MemoryTables:
    """Declare the memory table family called ``name`` in ``metadata``."""
    ident = sa.String(IDENTIFIER_LENGTH)
    memories = sa.Table(
        name,
        metadata,
        # A stable integer row id: SQLite's search index refers to rows by it (an implicit
        # rowid may change on VACUUM).
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("memory_id", ident, nullable=False, unique=True),
        sa.Column("memory", sa.Text, nullable=False),
        # Unicode case folding done once at write time: search compares folded needle with
        # folded text, which SQLite's ASCII-only lower() and LIKE cannot do.
        sa.Column("memory_folded", sa.Text, nullable=False),
        sa.Column("user_id", ident),
        sa.Column("agent_id", ident),
        sa.Column("team_id", ident),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    # Each list query orders by (sort column, memory_id); these indexes deliver rows in that
    # order for the unfiltered list and for each exact-match filter.
    for columns in (
        ("updated_at", "memory_id"),
        ("created_at", "memory_id"),
        ("user_id", "updated_at", "memory_id"),
        ("user_id", "created_at", "memory_id"),
        ("agent_id", "updated_at", "memory_id"),
        ("team_id", "updated_at", "memory_id"),
    ):
        sa.Index(f"ix_{name}_{'_'.join(c for c in columns if c != 'memory_id')}",
                 *(memories.c[c] for c in columns))

    _search_index(memories)

    topics = sa.Table(
        f"{name}_topics",
        metadata,
        sa.Column(
            "memory_id",
            ident,
            sa.ForeignKey(memories.c.memory_id, ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("topic", ident, primary_key=True),
        # Order in which the client listed the topics, so a memory reads back as written.
        sa.Column("position", sa.Integer, nullable=False),
        # Copied from the memory so "topics of one user" is answered from this table alone.
        sa.Column("user_id", ident),
        # The memory's times, copied (and kept in step by every write) so that a topic's
        # memories can be read from its index already in the order a list asks for.
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    for sort_column in ("updated_at", "created_at"):
        sa.Index(f"ix_{name}_topics_topic_{sort_column}", topics.c.topic, topics.c[sort_column],
                 topics.c.memory_id)
    sa.Index(f"ix_{name}_topics_user", topics.c.user_id, topics.c.topic)

    user_stats = sa.Table(
        f"{name}_user_stats",
        metadata,
        sa.Column("user_id", ident, primary_key=True),
        sa.Column("total_memories", sa.Integer, nullable=False),
        sa.Column("last_memory_updated_at", UtcDateTime, nullable=False),
    )
    sa.Index(
        f"ix_{name}_user_stats_recent",
        user_stats.c.last_memory_updated_at,
        user_stats.c.user_id,
    )

    history = sa.Table(
        f"{name}_history",
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        # No foreign key: a memory's history outlives it (its last entry is the delete).
        sa.Column("memory_id", ident, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event", sa.String(6), nullable=False),
        # The memory as this version left it (for a delete: as it was when deleted).
        sa.Column("memory", sa.Text, nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("user_id", ident),
        sa.Column("agent_id", ident),
        sa.Column("team_id", ident),
        sa.Column("changed_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("memory_id", "version", name=f"uq_{name}_history_version"),
    )
    # A memory's history is read through the unique constraint's index; erasing a user finds
    # that user's entries through this one.
    sa.Index(f"ix_{name}_history_user", history.c.user_id)
    # One row per Idempotency-Key a caller has used on a create: the memory it made and a
    # digest of what was asked, so a retry gets that memory back and a reuse is recognised.
    # Keys are scoped by the memory's owner, so one user's key never replays another's memory,
    # and have no foreign key: a key outlives its memory's deletion, so a late retry cannot
    # create the memory again.
    idempotency = sa.Table(
        f"{name}_idempotency",
        metadata,
        sa.Column("user_id", ident, primary_key=True),
        sa.Column("idempotency_key", ident, primary_key=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("memory_id", ident, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    # Expired keys are purged by range on this index.
    sa.Index(f"ix_{name}_idempotency_expires", idempotency.c.expires_at)
    # How many write transactions have committed, spread over a few rows so that concurrent
    # writers on PostgreSQL rarely wait for each other's row lock. Each write transaction adds
    # one to a row in the same transaction, and rows are never deleted, so the sum grows with
    # every change to the family's data: a count remembered with the sum it was read under
    # is still the count while the sum has not moved (storage/repository.py, RememberedCounts).
    changes = sa.Table(
        f"{name}_changes",
        metadata,
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("changes", sa.BigInteger, nullable=False),
    )
    # Search by meaning. Each memory's embedding, derived from its text by the model the
    # family records: float32 bytes on SQLite (sqlite-vec reads them as they are), a real[]
    # on PostgreSQL, which needs no extension to store and which pgvector casts to its vector
    # type, so memories are embedded even before pgvector is installed. A vector goes with its
    # memory (ON DELETE CASCADE, in the delete's own transaction) and is dropped by the write
    # that changes the memory's text.
    vectors = sa.Table(
        f"{name}_vectors",
        metadata,
        sa.Column("memory_id", ident, sa.ForeignKey(memories.c.memory_id, ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("embedding", sa.LargeBinary().with_variant(postgresql.ARRAY(sa.REAL), "postgresql"),
                  nullable=False),
    )
    # Memories waiting for an embedding: written by the same transaction as the memory when
    # the model cannot embed inside it (a remote provider, or one that failed), and taken by
    # the embedding worker; its size is the backlog /metrics and /ready report.
    embedding_queue = sa.Table(
        f"{name}_embedding_queue",
        metadata,
        sa.Column("memory_id", ident, sa.ForeignKey(memories.c.memory_id, ondelete="CASCADE"),
                  primary_key=True),
    )
    # Which model made the family's vectors (one row, or none before the first): vectors of
    # two models cannot be compared, so a server with another model refuses search by meaning
    # until `mnemo reindex` has re-embedded everything.
    embedding_model = sa.Table(
        f"{name}_embedding_model",
        metadata,
        sa.Column("slot", sa.Integer, sa.CheckConstraint("slot = 1", name=f"ck_{name}_embedding_model_one"),
                  primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(IDENTIFIER_LENGTH), nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
    )
    return MemoryTables(name=name, memories=memories, topics=topics, user_stats=user_stats,
                        history=history, idempotency=idempotency, changes=changes, vectors=vectors,
                        embedding_queue=embedding_queue, embedding_model=embedding_model)
