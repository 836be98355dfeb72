"""The memory model: what a memory table family holds, as Python values, and the errors its
writes raise. No SQL here: storage.repository reads and writes these."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson


# Not frozen, though never changed once made (dataclasses.replace makes a new one): a frozen
# dataclass sets each field through object.__setattr__, which made building a page's
# memories cost several times as much (docs/PERFORMANCE.md).
@dataclass(slots=True)
class Memory:
    memory_id: str
    memory: str
    topics: list[str]
    user_id: str | None
    agent_id: str | None
    team_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def version(self) -> str:
        """A digest of everything the memory is: it changes whenever any part of it does.

        ``updated_at`` alone almost does (every update moves it strictly forward), but a memory
        deleted and imported again under its id could come back different with the same times.
        """
        state = [self.memory_id, self.memory, self.topics, self.user_id, self.agent_id,
                 self.team_id, self.created_at.isoformat(), self.updated_at.isoformat()]
        return hashlib.sha256(orjson.dumps(state)).hexdigest()[:32]


class VersionMismatch(Exception):
    """A conditional write found the memory at another version, or found no memory."""


class IdempotencyConflict(Exception):
    """An idempotency key that cannot be honoured for this request."""


class IdempotencyKeyReused(IdempotencyConflict):
    """The key already created a memory from a different request."""


class IdempotentMemoryGone(IdempotencyConflict):
    """The key created a memory that has since been deleted."""


class MemoriesChanged(Exception):
    """Memories a write was based on have changed or gone since they were read."""


class MemoryExists(Exception):
    """Memories with these ids are already stored, or were given twice in one batch."""

    def __init__(self, memory_ids: Sequence[str]):
        self.memory_ids = list(memory_ids)
        super().__init__("memory ids already taken: " + ", ".join(self.memory_ids))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version of a memory: what a create, update or delete left (a delete: what went)."""

    version: int
    event: str
    memory: str
    topics: list[str]
    user_id: str | None
    agent_id: str | None
    team_id: str | None
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class UserStats:
    user_id: str
    total_memories: int
    last_memory_updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    items: list
    page: int
    limit: int
    total_count: int
    search_time_ms: float
    # A ranked search's score for each item, in order; None for a list in a sort order.
    scores: list[float] | None = None

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total_count / self.limit)


@dataclass(frozen=True, slots=True)
class MemoryQuery:
    """What a list of memories is filtered, ordered and paged by."""

    user_id: str | None = None
    agent_id: str | None = None
    team_id: str | None = None
    topics: Sequence[str] = ()
    search_content: str | None = None
    sort_by: str = "updated_at"
    sort_order: str = "desc"
    limit: int = 20
    page: int = 1
    # substring: filter by search_content, in sort order; semantic and hybrid: rank by it.
    search_mode: str = "substring"



def utcnow() -> datetime:
    return datetime.now(UTC)


def unique_topics(topics: Iterable[str] | None) -> list[str]:
    """Topics are a set that remembers the order the client gave."""
    return list(dict.fromkeys(topics or ()))
