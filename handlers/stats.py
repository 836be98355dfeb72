"""Statistics: memories per user."""

from __future__ import annotations

from mnemo.auth import owner

from ._shared import page_json, repository


def _user_stats_json(stats):
    return {
        "user_id": stats.user_id,
        "total_memories": stats.total_memories,
        "last_memory_updated_at": stats.last_memory_updated_at,
    }


def get_user_memory_stats(token_info, limit=20, page=1, user_id=None, db_id=None, table=None):
    stats = repository(db_id, table).user_stats(limit=limit, page=page, user_id=owner(token_info, user_id))
    return page_json(stats, _user_stats_json), 200
