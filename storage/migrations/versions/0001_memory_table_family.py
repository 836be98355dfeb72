"""A memory table family: memories, their topics, per-user statistics and the search index.

This is the schema ``create_schema()`` made before Alembic owned it; a family created that way
is recognised and recorded as this revision by ``mnemo migrate``.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

IDENTIFIER_LENGTH = 255
SORT_INDEXES = (
    ("updated_at", "memory_id"),
    ("created_at", "memory_id"),
    ("user_id", "updated_at", "memory_id"),
    ("user_id", "created_at", "memory_id"),
    ("agent_id", "updated_at", "memory_id"),
    ("team_id", "updated_at", "memory_id"),
)


def upgrade() -> None:
    name = context.config.attributes["table"]
    dialect = op.get_bind().dialect.name
    ident = sa.String(IDENTIFIER_LENGTH)
    instant = sa.DateTime(timezone=True)

    # Shared by every family in the database, so never dropped by a downgrade. A server
    # without it (a minimal build) serves substring search by scanning instead.
    trigrams = dialect == "postgresql" and op.get_bind().exec_driver_sql(
        "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm')").scalar()
    if trigrams:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        name,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("memory_id", ident, nullable=False, unique=True),
        sa.Column("memory", sa.Text, nullable=False),
        sa.Column("memory_folded", sa.Text, nullable=False),
        sa.Column("user_id", ident),
        sa.Column("agent_id", ident),
        sa.Column("team_id", ident),
        sa.Column("created_at", instant, nullable=False),
        sa.Column("updated_at", instant, nullable=False),
    )
    for columns in SORT_INDEXES:
        op.create_index(f"ix_{name}_{'_'.join(c for c in columns if c != 'memory_id')}", name,
                        list(columns))
    if trigrams:
        op.create_index(f"ix_{name}_search", name, ["memory_folded"], postgresql_using="gin",
                        postgresql_ops={"memory_folded": "gin_trgm_ops"})
    elif dialect == "sqlite":
        for statement in _sqlite_search(name):
            op.execute(statement)

    op.create_table(
        f"{name}_topics",
        sa.Column("memory_id", ident, sa.ForeignKey(f"{name}.memory_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("topic", ident, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("user_id", ident),
    )
    op.create_index(f"ix_{name}_topics_topic", f"{name}_topics", ["topic", "memory_id"])
    op.create_index(f"ix_{name}_topics_user", f"{name}_topics", ["user_id", "topic"])

    op.create_table(
        f"{name}_user_stats",
        sa.Column("user_id", ident, primary_key=True),
        sa.Column("total_memories", sa.Integer, nullable=False),
        sa.Column("last_memory_updated_at", instant, nullable=False),
    )
    op.create_index(f"ix_{name}_user_stats_recent", f"{name}_user_stats",
                    ["last_memory_updated_at", "user_id"])


def downgrade() -> None:
    name = context.config.attributes["table"]
    op.drop_table(f"{name}_user_stats")
    op.drop_table(f"{name}_topics")
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER {name}_search_{trigger}")
        op.execute(f"DROP TABLE {name}_search")
    op.drop_table(name)


def _sqlite_search(name: str) -> list[str]:
    """An FTS5 trigram index over the folded text, kept in step with the table by triggers."""
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
