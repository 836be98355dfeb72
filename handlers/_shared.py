"""What every handler needs: its repository, and what a request says about versions and retries."""

from __future__ import annotations

from collections.abc import Callable

from flask import request

from mnemo import extensions
from storage import Memory, MemoryRepository


def repository(db_id: str | None, table: str | None) -> MemoryRepository:
    """The repository that ``db_id``/``table`` name (storage raises if they name nothing)."""
    return extensions.catalog().repository(db_id, table)


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
