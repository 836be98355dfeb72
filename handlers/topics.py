"""Topics: the distinct topics memories carry."""

from __future__ import annotations

from ._shared import repository


def get_memory_topics(user_id=None, db_id=None, table=None):
    return repository(db_id, table).topics(user_id), 200
