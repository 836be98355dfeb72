"""History: every version of a memory, kept after it is deleted."""

from __future__ import annotations

from mnemo.api_errors import MemoryNotFound
from mnemo.auth import owner
from mnemo.shapes import history_entry_json

from ._shared import repository


def get_memory_history(memory_id, token_info, user_id=None, db_id=None, table=None):
    entries = repository(db_id, table).history(memory_id, owner(token_info, user_id))
    if not entries:
        raise MemoryNotFound(memory_id)
    return [history_entry_json(entry) for entry in entries], 200
