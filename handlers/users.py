"""Users: erase everything stored about one user."""

from __future__ import annotations

from mnemo.api_errors import Forbidden
from mnemo.auth import owner

from ._shared import repository


def erase_user_memories(user_id, token_info, db_id=None, table=None):
    memories = repository(db_id, table)
    if owner(token_info, user_id) != user_id:
        raise Forbidden("A token may erase only its own user's memories")
    return {"deleted": memories.erase_user(user_id)}, 200
