"""A count of committed write transactions, so costly counts can be remembered between writes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    name = context.config.attributes["table"]
    op.create_table(
        f"{name}_changes",
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("changes", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    name = context.config.attributes["table"]
    op.drop_table(f"{name}_changes")
