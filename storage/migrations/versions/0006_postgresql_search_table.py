"""PostgreSQL: the trigram index moves from the memory table to a search table of its own.

An exact search count re-checks the text of every row the trigram index proposes; for a common
word that is nearly every page of the table, and the memory table's rows are almost three times
as wide as their folded text. The search table holds just the row id and the folded text, and a
trigger keeps it in step with every insert, text change and delete. SQLite's FTS5 search table
already has this shape: nothing changes there.

The memory table is locked for the whole migration, reads and writes (about 35 s for
1,000,000 memories, most of it building the new index), so no write is missed between the
trigger and the copy. Replicas of the previous release still answer correctly once it is done,
and keep the search table in step through the trigger, but they search the memory table, which
no longer has an index for it: replace them soon.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TRIGRAMS_INSTALLED = "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    name = context.config.attributes["table"]
    memories, search, sync, index = _quoted(name)
    # First, so the memory table is locked once, fully, for the whole migration: taking the
    # trigger's lighter lock first and this one last could deadlock with a write waiting
    # between them, and lose the migration's work.
    op.execute(f'DROP INDEX IF EXISTS "ix_{name}_search"')
    op.execute(f"CREATE TABLE {search} (id BIGINT PRIMARY KEY, memory_folded TEXT NOT NULL)")
    op.execute(
        f"CREATE FUNCTION {sync}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'INSERT' THEN "
        f"INSERT INTO {search} (id, memory_folded) VALUES (NEW.id, NEW.memory_folded); "
        f"ELSIF TG_OP = 'UPDATE' THEN "
        f"UPDATE {search} SET memory_folded = NEW.memory_folded WHERE id = NEW.id; "
        f"ELSE DELETE FROM {search} WHERE id = OLD.id; "
        f"END IF; RETURN NULL; END $$")
    op.execute(f"CREATE TRIGGER {sync} AFTER INSERT OR UPDATE OF memory_folded OR DELETE "
               f"ON {memories} FOR EACH ROW EXECUTE FUNCTION {sync}()")
    op.execute(f"INSERT INTO {search} (id, memory_folded) SELECT id, memory_folded FROM {memories}")
    # Built after the copy: one sorted build instead of a million insertions.
    # Without pg_trgm (a minimal server), substring search scans the search table instead.
    if op.get_bind().exec_driver_sql(TRIGRAMS_INSTALLED).scalar():
        op.execute(f"CREATE INDEX {index} ON {search} USING gin (memory_folded gin_trgm_ops)")
    op.execute(f"ANALYZE {search}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    name = context.config.attributes["table"]
    _, search, sync, _ = _quoted(name)
    op.execute(f"DROP FUNCTION {sync}() CASCADE")
    op.execute(f"DROP TABLE {search}")
    if op.get_bind().exec_driver_sql(TRIGRAMS_INSTALLED).scalar():
        op.create_index(f"ix_{name}_search", name, ["memory_folded"], postgresql_using="gin",
                        postgresql_ops={"memory_folded": "gin_trgm_ops"})


def _quoted(name: str) -> tuple[str, ...]:
    """The memory table, search table, trigger function and index, quoted: PostgreSQL folds an
    unquoted name to lower case, and a family's name may have capitals."""
    return tuple(f'"{n}"' for n in (name, f"{name}_search", f"{name}_search_sync", f"ix_{name}_search"))
