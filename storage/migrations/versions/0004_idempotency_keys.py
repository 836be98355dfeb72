"""Idempotency keys: the memory each Idempotency-Key created, per owner, until it expires.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

IDENTIFIER_LENGTH = 255


def upgrade() -> None:
    name = context.config.attributes["table"]
    ident = sa.String(IDENTIFIER_LENGTH)
    op.create_table(
        f"{name}_idempotency",
        sa.Column("user_id", ident, primary_key=True),
        sa.Column("idempotency_key", ident, primary_key=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("memory_id", ident, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(f"ix_{name}_idempotency_expires", f"{name}_idempotency", ["expires_at"])


def downgrade() -> None:
    name = context.config.attributes["table"]
    op.drop_index(f"ix_{name}_idempotency_expires", table_name=f"{name}_idempotency")
    op.drop_table(f"{name}_idempotency")
