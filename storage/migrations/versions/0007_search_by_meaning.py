"""Search by meaning: each memory's embedding, the queue of memories waiting for one, the
model that made them, and a word index that hybrid search ranks by.

Every existing memory is queued: the embedding worker of `mnemo serve` embeds them in the
background (or `mnemo reindex` does, with a progress bar), and until then they are still found
by substring. The word index is built from the memories in the migration's transaction.

On PostgreSQL the pgvector extension is created when the server offers it; without it the
family is still migrated, vectors are still stored (as real[]), and only search by meaning is
refused until pgvector is installed and `mnemo migrate` run again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

IDENTIFIER_LENGTH = 255


def upgrade() -> None:
    name = context.config.attributes["table"]
    dialect = op.get_bind().dialect.name
    ident = sa.String(IDENTIFIER_LENGTH)
    cascade = {"ondelete": "CASCADE"}
    op.create_table(
        f"{name}_vectors",
        sa.Column("memory_id", ident, sa.ForeignKey(f"{name}.memory_id", **cascade), primary_key=True),
        sa.Column("embedding", sa.LargeBinary().with_variant(postgresql.ARRAY(sa.REAL), "postgresql"),
                  nullable=False),
    )
    op.create_table(
        f"{name}_embedding_queue",
        sa.Column("memory_id", ident, sa.ForeignKey(f"{name}.memory_id", **cascade), primary_key=True),
    )
    op.create_table(
        f"{name}_embedding_model",
        sa.Column("slot", sa.Integer, sa.CheckConstraint("slot = 1", name=f"ck_{name}_embedding_model_one"),
                  primary_key=True, autoincrement=False),
        sa.Column("model", ident, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    q = op.get_bind().dialect.identifier_preparer.quote
    op.execute(f"INSERT INTO {q(name + '_embedding_queue')} (memory_id) SELECT memory_id FROM {q(name)}")
    if dialect == "sqlite":
        words = f"{name}_words"
        op.execute(f"CREATE VIRTUAL TABLE {words} USING fts5(memory_folded, content='{name}', "
                   f"content_rowid='id', tokenize='unicode61 remove_diacritics 0')")
        op.execute(f"CREATE TRIGGER {words}_insert AFTER INSERT ON {name} BEGIN "
                   f"INSERT INTO {words}(rowid, memory_folded) VALUES (new.id, new.memory_folded); END")
        op.execute(f"CREATE TRIGGER {words}_delete AFTER DELETE ON {name} BEGIN "
                   f"INSERT INTO {words}({words}, rowid, memory_folded) "
                   f"VALUES ('delete', old.id, old.memory_folded); END")
        op.execute(f"CREATE TRIGGER {words}_update AFTER UPDATE OF memory_folded ON {name} BEGIN "
                   f"INSERT INTO {words}({words}, rowid, memory_folded) "
                   f"VALUES ('delete', old.id, old.memory_folded); "
                   f"INSERT INTO {words}(rowid, memory_folded) VALUES (new.id, new.memory_folded); END")
        op.execute(f"INSERT INTO {words}({words}) VALUES ('rebuild')")
    else:
        op.execute(f'CREATE INDEX "ix_{name}_words" ON "{name}_search" '
                   f"USING gin ((to_tsvector('simple'::regconfig, memory_folded)))")


def downgrade() -> None:
    name = context.config.attributes["table"]
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_words_{trigger}")
        op.execute(f"DROP TABLE IF EXISTS {name}_words")
    else:
        op.execute(f'DROP INDEX IF EXISTS "ix_{name}_words"')
    op.drop_table(f"{name}_embedding_model")
    op.drop_table(f"{name}_embedding_queue")
    op.drop_table(f"{name}_vectors")
