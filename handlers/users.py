"""Users: erase everything stored about one user."""

from __future__ import annotations

from mnemo.auth import is_admin

from ._shared import error, repository


def erase_user_memories(user_id, token_info, db_id=None, table=None):
    memories = repository(db_id, table)
    if not is_admin(token_info) and user_id != token_info["sub"]:
        return error(403, "A token may erase only its own user's memories", "FORBIDDEN")
    return {"deleted": memories.erase_user(user_id)}, 200
