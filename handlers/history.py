"""History: every version of a memory, kept after it is deleted."""

from __future__ import annotations

from mnemo.auth import owner

from ._shared import memory_not_found, repository


def _entry_json(entry):
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


def get_memory_history(memory_id, token_info, user_id=None, db_id=None, table=None):
    entries = repository(db_id, table).history(memory_id, owner(token_info, user_id))
    if not entries:
        return memory_not_found(memory_id)
    return [_entry_json(entry) for entry in entries], 200
