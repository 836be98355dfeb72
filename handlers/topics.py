"""Topics: the distinct topics memories carry."""

from __future__ import annotations

from mnemo.auth import owner

from ._shared import repository


def get_memory_topics(token_info, user_id=None, db_id=None, table=None):
    return repository(db_id, table).topics(owner(token_info, user_id)), 200
