"""Memories: create, read, list, update and delete.

``token_info`` is the caller, as mnemo.auth found it; ``owner`` says whose memories an
operation applies to (an administrator's choice, anyone else's own).
"""

from __future__ import annotations

from mnemo.api_errors import MemoryNotFound, SearchQuestionRequired, UserIdRequired
from mnemo.auth import owner
from mnemo.shapes import memory_json, page_json, ranked_page_json
from storage import MemoryQuery

from ._shared import etag, idempotency_key, if_match, repository


def create_memory(body, token_info, db_id=None, table=None):
    memories = repository(db_id, table)
    user_id = owner(token_info, body.get("user_id"))
    if not user_id:
        raise UserIdRequired()
    key = idempotency_key()
    if key is None:
        memory = memories.create(memory=body["memory"], user_id=user_id, topics=body.get("topics"))
        headers = etag(memory)
    else:
        memory, replayed = memories.create_once(key, memory=body["memory"], user_id=user_id,
                                                topics=body.get("topics"))
        headers = {**etag(memory), "Idempotent-Replayed": str(replayed).lower()}
    return memory_json(memory), 200, headers


def get_memory(memory_id, token_info, user_id=None, db_id=None, table=None):
    memory = repository(db_id, table).get(memory_id, owner(token_info, user_id))
    if memory is None:
        raise MemoryNotFound(memory_id)
    return memory_json(memory), 200, etag(memory)


def get_memories(
    token_info,
    user_id=None,
    agent_id=None,
    team_id=None,
    search_content=None,
    limit=20,
    page=1,
    sort_by="updated_at",
    sort_order="desc",
    db_id=None,
    table=None,
    topics=None,
    search_mode="substring",
):
    if search_mode != "substring" and not search_content:
        raise SearchQuestionRequired(search_mode)
    query = MemoryQuery(
        user_id=owner(token_info, user_id),
        agent_id=agent_id,
        team_id=team_id,
        # An empty item (``topics=``) filters nothing, as in Agno.
        topics=[topic for topic in topics or () if topic],
        search_content=search_content,
        sort_by=sort_by,
        sort_order=sort_order,
        limit=limit,
        page=page,
        search_mode=search_mode,
    )
    found = repository(db_id, table).list(query)
    return (page_json(found, memory_json) if found.scores is None else ranked_page_json(found)), 200


def update_memory(memory_id, body, token_info, db_id=None, table=None):
    memories = repository(db_id, table)
    user_id = owner(token_info, body.get("user_id"))
    if not user_id:
        raise UserIdRequired()
    memory = memories.update(memory_id, user_id=user_id, memory=body["memory"], topics=body.get("topics"),
                             if_version=if_match())
    if memory is None:
        raise MemoryNotFound(memory_id)
    return memory_json(memory), 200, etag(memory)


def delete_memory(memory_id, token_info, user_id=None, db_id=None, table=None):
    repository(db_id, table).delete([memory_id], owner(token_info, user_id), if_version=if_match())
    return None, 204


def delete_memories(body, token_info, db_id=None, table=None):
    repository(db_id, table).delete(body["memory_ids"], owner(token_info, body.get("user_id")))
    return None, 204
