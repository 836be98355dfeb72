"""Memory history: one row per version of every memory, kept after the memory is deleted.

Memories stored before this revision get one ``create`` entry each, holding the memory and its
topics as they are at upgrade time, stamped with the memory's ``updated_at``: their history
starts there (earlier versions were never recorded), and every later change adds to it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

IDENTIFIER_LENGTH = 255


def upgrade() -> None:
    name = context.config.attributes["table"]
    history = f"{name}_history"
    ident = sa.String(IDENTIFIER_LENGTH)
    op.create_table(
        history,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("memory_id", ident, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event", sa.String(6), nullable=False),
        sa.Column("memory", sa.Text, nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("user_id", ident),
        sa.Column("agent_id", ident),
        sa.Column("team_id", ident),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("memory_id", "version", name=f"uq_{name}_history_version"),
    )
    op.create_index(f"ix_{name}_history_user", history, ["user_id"])

    # Each memory's topics as a JSON array in the order the client gave them, built by the
    # database itself so that a large table is backfilled by one statement. Names quoted:
    # PostgreSQL folds an unquoted name to lower case, and a family's may have capitals.
    if op.get_bind().dialect.name == "postgresql":
        topics = (f"(SELECT coalesce(json_agg(t.topic ORDER BY t.position), '[]'::json) "
                  f"FROM \"{name}_topics\" t WHERE t.memory_id = m.memory_id)")
    else:
        topics = (f"(SELECT json_group_array(topic) FROM (SELECT t.topic FROM \"{name}_topics\" t "
                  f"WHERE t.memory_id = m.memory_id ORDER BY t.position))")
    op.execute(
        f"INSERT INTO \"{history}\" (memory_id, version, event, memory, topics, user_id, agent_id, "
        f"team_id, changed_at) SELECT m.memory_id, 1, 'create', m.memory, {topics}, m.user_id, "
        f"m.agent_id, m.team_id, m.updated_at FROM \"{name}\" m"
    )


def downgrade() -> None:
    name = context.config.attributes["table"]
    op.drop_index(f"ix_{name}_history_user", table_name=f"{name}_history")
    op.drop_table(f"{name}_history")
