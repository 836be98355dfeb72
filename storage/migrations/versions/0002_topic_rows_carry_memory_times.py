"""Topic rows carry their memory's times, indexed per topic in list order.

A topic filter then reads a page of the topic's memories straight from the index, already
sorted, instead of collecting every memory of the topic and sorting them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SORT_COLUMNS = ("created_at", "updated_at")  # in the order the models declare them


def upgrade() -> None:
    name = context.config.attributes["table"]
    topics = f"{name}_topics"
    with op.batch_alter_table(topics) as batch:
        for column in SORT_COLUMNS:
            batch.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    # Quoted: PostgreSQL folds an unquoted name to lower case, and a family's may have capitals.
    memories_q, topics_q = f'"{name}"', f'"{topics}"'
    for column in SORT_COLUMNS:
        op.execute(f"UPDATE {topics_q} SET {column} = (SELECT m.{column} FROM {memories_q} m "
                   f"WHERE m.memory_id = {topics_q}.memory_id)")
    with op.batch_alter_table(topics) as batch:
        for column in SORT_COLUMNS:
            batch.alter_column(column, existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.drop_index(f"ix_{name}_topics_topic")
        for column in SORT_COLUMNS:
            batch.create_index(f"ix_{name}_topics_topic_{column}", ["topic", column, "memory_id"])


def downgrade() -> None:
    name = context.config.attributes["table"]
    with op.batch_alter_table(f"{name}_topics") as batch:
        for column in SORT_COLUMNS:
            batch.drop_index(f"ix_{name}_topics_topic_{column}")
        batch.create_index(f"ix_{name}_topics_topic", ["topic", "memory_id"])
        for column in SORT_COLUMNS:
            batch.drop_column(column)
