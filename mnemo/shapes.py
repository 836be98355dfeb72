"""The JSON shapes of the contract's objects, shared by the handlers and the export file."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from storage import HistoryEntry, Memory, Page, UserStats


def to_json(value) -> bytes:
    """``value`` as JSON. Times are left to orjson, which writes an aware UTC datetime as
    RFC 3339 with a ``Z`` and with microseconds when there are any, as the contract's
    examples show, for a fraction of what formatting them in Python costs."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def memory_json(memory: Memory) -> dict:
    return {
        "memory_id": memory.memory_id,
        "memory": memory.memory,
        "user_id": memory.user_id,
        "agent_id": memory.agent_id,
        "team_id": memory.team_id,
        "topics": memory.topics,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
    }


def ranked_page_json(page: Page) -> dict:
    """A page of a ranked search: each memory with its score."""
    answer = page_json(page, memory_json)
    for item, score in zip(answer["data"], page.scores or (), strict=True):
        item["score"] = score
    return answer


def history_entry_json(entry: HistoryEntry) -> dict:
    return {
        "version": entry.version,
        "event": entry.event,
        "memory": entry.memory,
        "topics": entry.topics,
        "user_id": entry.user_id,
        "agent_id": entry.agent_id,
        "team_id": entry.team_id,
        "changed_at": entry.changed_at,
    }


def user_stats_json(stats: UserStats) -> dict:
    return {
        "user_id": stats.user_id,
        "total_memories": stats.total_memories,
        "last_memory_updated_at": stats.last_memory_updated_at,
    }


def page_json(page: Page, item_json: Callable) -> dict:
    return {
        "data": [item_json(item) for item in page.items],
        "meta": {
            "page": page.page,
            "limit": page.limit,
            "total_pages": page.total_pages,
            "total_count": page.total_count,
            "search_time_ms": page.search_time_ms,
        },
    }
