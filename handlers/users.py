"""Users: erase everything stored about one user."""

from __future__ import annotations

from mnemo.auth import owner

from ._shared import error, repository


def erase_user_memories(user_id, token_info, db_id=None, table=None):
    memories = repository(db_id, table)
    if owner(token_info, user_id) != user_id:
        return error(403, "A token may erase only its own user's memories", "FORBIDDEN")
    return {"deleted": memories.erase_user(user_id)}, 200
