"""optimize-memories: a language model summarizes a user's memories into one."""

from __future__ import annotations

from mnemo import extensions, optimizer
from mnemo.api_errors import NotFound, UserIdRequired
from mnemo.auth import owner
from mnemo.shapes import memory_json

from ._shared import repository


def optimize_memories(body, token_info, db_id=None, table=None):
    memories = repository(db_id, table)
    user_id = owner(token_info, body.get("user_id"))
    if not user_id:
        raise UserIdRequired()
    result = optimizer.optimize(memories, extensions.model(), user_id, body.get("model"),
                                body.get("apply", True))
    if result is None:
        raise NotFound(f"No memories found for user {user_id}")
    return {
        "memories": [memory_json(memory) for memory in result.memories],
        "memories_before": result.memories_before,
        "memories_after": len(result.memories),
        "tokens_before": result.tokens_before,
        "tokens_after": result.tokens_after,
        "tokens_saved": result.tokens_saved,
        "reduction_percentage": result.reduction_percentage,
    }, 200
