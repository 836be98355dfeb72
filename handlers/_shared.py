"""What every handler needs: its repository, and the JSON shapes of the contract."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from flask import current_app, request

from mnemo.errors import error_body, request_id
from storage import Memory, MemoryRepository, Page

CATALOG = "mnemo.catalog"  # the Flask extension under which create_app keeps the Catalog
METRICS = "mnemo.metrics"  # ... and the metrics' mnemo.metrics.Exposition
MODEL = "mnemo.model"  # ... and the language model settings (config.ModelConfig)


def repository(db_id: str | None, table: str | None) -> MemoryRepository:
    """The repository that ``db_id``/``table`` name (storage raises if they name nothing)."""
    return current_app.extensions[CATALOG].repository(db_id, table)


def to_json(value) -> bytes:
    """``value`` as JSON. Times are left to orjson, which writes an aware UTC datetime as
    RFC 3339 with a ``Z`` and with microseconds when there are any, as the contract's
    examples show, for a fraction of what formatting them in Python costs."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def memory_json(memory: Memory) -> dict:
    return {
        "memory_id": memory.memory_id,
        "memory": memory.memory,
        "user_id": memory.user_id,
        "agent_id": memory.agent_id,
        "team_id": memory.team_id,
        "topics": memory.topics,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
    }


def etag(memory: Memory) -> dict[str, str]:
    """The ``ETag`` header of an answer carrying ``memory``: its version, a strong tag."""
    return {"ETag": f'"{memory.version}"'}


def if_match() -> Callable[[str], bool] | None:
    """What the request's ``If-Match`` accepts, as a test of a memory's version; None without one.

    ``*`` accepts any version of a memory that exists. Only strong tags can match (RFC 9110's
    strong comparison): a weak ``W/"..."`` tag matches nothing, and neither does anything that
    is not a quoted tag.
    """
    header = request.headers.get("If-Match")
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",")]
    if "*" in tags:
        return lambda _version: True
    return {tag[1:-1] for tag in tags if len(tag) >= 2 and tag[0] == tag[-1] == '"'}.__contains__


def idempotency_key() -> str | None:
    return request.headers.get("Idempotency-Key")


def page_json(page: Page, item_json: Callable) -> dict:
    return {
        "data": [item_json(item) for item in page.items],
        "meta": {
            "page": page.page,
            "limit": page.limit,
            "total_pages": page.total_pages,
            "total_count": page.total_count,
            "search_time_ms": page.search_time_ms,
        },
    }


def error(status: int, detail: str, error_code: str) -> tuple[dict, int]:
    return error_body(status, detail, error_code, request_id(request)), status


def memory_not_found(memory_id: str) -> tuple[dict, int]:
    return error(404, f"Memory with ID {memory_id} not found", "NOT_FOUND")


def user_id_required() -> tuple[dict, int]:
    # Agno's exact words: its clients and tests match on them.
    return error(400, "User ID is required", "BAD_REQUEST")
