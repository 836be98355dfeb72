"""optimize-memories: a language model summarizes a user's memories into one."""

from __future__ import annotations

from flask import current_app

from mnemo import optimizer
from mnemo.auth import owner

from ._shared import MODEL, error, memory_json, repository, user_id_required


def optimize_memories(body, token_info, db_id=None, table=None):
    memories = repository(db_id, table)
    user_id = owner(token_info, body.get("user_id"))
    if not user_id:
        return user_id_required()
    result = optimizer.optimize(memories, current_app.extensions[MODEL], user_id, body.get("model"),
                                body.get("apply", True))
    if result is None:
        return error(404, f"No memories found for user {user_id}", "NOT_FOUND")
    return {
        "memories": [memory_json(memory) for memory in result.memories],
        "memories_before": result.memories_before,
        "memories_after": len(result.memories),
        "tokens_before": result.tokens_before,
        "tokens_after": result.tokens_after,
        "tokens_saved": result.tokens_saved,
        "reduction_percentage": result.reduction_percentage,
    }, 200
