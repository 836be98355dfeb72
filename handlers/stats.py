"""Statistics: memories per user."""

from __future__ import annotations

from mnemo.auth import owner
from mnemo.shapes import page_json, user_stats_json

from ._shared import repository


def get_user_memory_stats(token_info, limit=20, page=1, user_id=None, db_id=None, table=None):
    stats = repository(db_id, table).user_stats(limit=limit, page=page, user_id=owner(token_info, user_id))
    return page_json(stats, user_stats_json), 200
