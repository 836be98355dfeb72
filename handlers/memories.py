"""Memories: create, read, list, update and delete."""

from __future__ import annotations

from storage import MemoryQuery

from ._shared import memory_json, memory_not_found, page_json, repository, user_id_required


def create_memory(body, db_id=None, table=None):
    memories = repository(db_id, table)
    if not body.get("user_id"):
        return user_id_required()
    memory = memories.create(memory=body["memory"], user_id=body["user_id"], topics=body.get("topics"))
    return memory_json(memory), 200


def get_memory(memory_id, user_id=None, db_id=None, table=None):
    memory = repository(db_id, table).get(memory_id, user_id)
    if memory is None:
        return memory_not_found(memory_id)
    return memory_json(memory), 200


def get_memories(
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
):
    query = MemoryQuery(
        user_id=user_id,
        agent_id=agent_id,
        team_id=team_id,
        # An empty item (``topics=``) filters nothing, as in Agno.
        topics=[topic for topic in topics or () if topic],
        search_content=search_content,
        sort_by=sort_by,
        sort_order=sort_order,
        limit=limit,
        page=page,
    )
    return page_json(repository(db_id, table).list(query), memory_json), 200


def update_memory(memory_id, body, db_id=None, table=None):
    memories = repository(db_id, table)
    if not body.get("user_id"):
        return user_id_required()
    memory = memories.update(
        memory_id, user_id=body["user_id"], memory=body["memory"], topics=body.get("topics")
    )
    if memory is None:
        return memory_not_found(memory_id)
    return memory_json(memory), 200


def delete_memory(memory_id, user_id=None, db_id=None, table=None):
    repository(db_id, table).delete([memory_id], user_id)
    return None, 204


def delete_memories(body, db_id=None, table=None):
    repository(db_id, table).delete(body["memory_ids"], body.get("user_id"))
    return None, 204
