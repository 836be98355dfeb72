"""Moving memories in and out of a memory table: JSON lines export and import, and copying the
memories of an Agno database (``SqliteDb`` or ``PostgresDb``).

A JSON line is one memory::

    {"memory_id": "...", "memory": "...", "user_id": "...", "agent_id": null, "team_id": null,
     "topics": ["..."], "created_at": "2025-01-01T00:00:02Z", "updated_at": "2025-01-01T20:03:48Z"}

Everything is streamed a batch at a time, so a table of any size needs the memory of one batch.
Each imported batch is one transaction, checked in full before it is written: a bad record
stops the import with nothing of its batch stored. Each function yields how far it has got after
every batch; what to show of it is the caller's business.
"""

from __future__ import annotations

import codecs
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

import orjson

from storage import Memory, MemoryExists, MemoryRepository, utcnow
from storage.agno_source import AgnoMemorySource, NotAnAgnoMemoryTable

from .shapes import memory_json, to_json

# Memories per transaction: large enough that a commit's cost is spread thin, small enough that
# one batch's memory stays small (the sizes tried: docs/PERFORMANCE.md).
BATCH_SIZE = 5000
FIELDS = ("memory_id", "memory", "user_id", "agent_id", "team_id", "topics", "created_at", "updated_at")
IDENTIFIERS = ("memory_id", "user_id", "agent_id", "team_id")
# The contract's limits for what a client may store; an import is held to the same ones.
MEMORY_MAX = 5000
IDENTIFIER_MAX = 255
TOPICS_MAX = 50
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# fromisoformat alone also takes ISO 8601 forms RFC 3339 does not (week dates, no separators).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


class BadInput(ValueError):
    """A record Mnemo will not store; the message says which one and why."""


@dataclass(frozen=True)
class Moved:
    """How far a transfer has got: the memories written or stored so far and, for an import of
    lines, the bytes of input read so far."""

    memories: int = 0
    bytes_read: int = 0


# -- export ------------------------------------------------------------------------------------


def export_memories(repository: MemoryRepository, out: BinaryIO) -> Iterator[Moved]:
    """Write every memory of the table to ``out``, one JSON line each, in memory_id order."""
    after, written, full = None, 0, True
    while full:
        memories = repository.scan(after, BATCH_SIZE)
        out.write(b"".join(to_json(memory_json(m)) + b"\n" for m in memories))
        written += len(memories)
        full = len(memories) == BATCH_SIZE
        if memories:
            after = memories[-1].memory_id
        yield Moved(written)
    out.flush()


# -- import ------------------------------------------------------------------------------------


def import_lines(repository: MemoryRepository, lines: Iterable[bytes]) -> Iterator[Moved]:
    """Store the memories of JSON lines, a batch per transaction, each batch checked first."""
    batch: list[Memory] = []
    lines_of: dict[str, int] = {}  # memory_id -> line, of the current batch
    stored = 0
    done_bytes = 0
    for number, raw in enumerate(lines, start=1):
        done_bytes += len(raw)
        if number == 1:
            # Editors on Windows start UTF-8 files with a byte order mark; JSON does not allow one.
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        try:
            memory = parse_line(raw)
            if memory.memory_id in lines_of:
                raise BadInput(f"memory_id {memory.memory_id!r} is also on line {lines_of[memory.memory_id]}")
        except BadInput as problem:
            first = min(lines_of.values(), default=number)
            raise BadInput(f"line {number}: {problem}; {_so_far(stored, first)}") from None
        batch.append(memory)
        lines_of[memory.memory_id] = number
        if len(batch) == BATCH_SIZE:
            stored += _write(repository, batch, lines_of, stored)
            yield Moved(stored, done_bytes)
            batch, lines_of = [], {}
    if batch:
        stored += _write(repository, batch, lines_of, stored)
    yield Moved(stored, done_bytes)


def parse_line(raw: bytes) -> Memory:
    if b"\x00" in raw:
        raise BadInput("contains a NUL byte")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadInput(f"is not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise BadInput("is not a JSON object")
    # Refused rather than dropped: a misspelt key ("topic") would otherwise lose data silently.
    unknown = [key for key in record if key not in FIELDS]
    if unknown:
        raise BadInput(f"has unknown keys: {', '.join(map(repr, unknown))} (known: {', '.join(FIELDS)})")
    created_at = _rfc3339(record, "created_at")
    return checked_memory(record, created_at, _rfc3339(record, "updated_at"))


def checked_memory(record: dict, created_at: datetime | None, updated_at: datetime | None) -> Memory:
    """A Memory from a record's fields, held to the contract's rules; absent parts generated."""
    for key in IDENTIFIERS:
        value = record.get(key)
        if value is not None and (
            not isinstance(value, str) or len(value) > IDENTIFIER_MAX or CONTROL.search(value)
        ):
            raise BadInput(f"{key} must be a string of at most {IDENTIFIER_MAX} characters "
                           "without control characters")
    memory_id = record.get("memory_id")
    if memory_id == "":
        raise BadInput("memory_id must not be empty")
    memory = record.get("memory")
    if not isinstance(memory, str) or not memory:
        raise BadInput("memory must be a non-empty string")
    if len(memory) > MEMORY_MAX:
        raise BadInput(f"memory is {len(memory)} characters long; at most {MEMORY_MAX} are allowed")
    if "\x00" in memory:
        raise BadInput("memory contains a NUL character")
    topics = record.get("topics")
    if topics is None:
        topics = []
    elif not isinstance(topics, list):
        raise BadInput("topics must be a list of strings")
    elif len(topics) > TOPICS_MAX:
        raise BadInput(f"topics has {len(topics)} items; at most {TOPICS_MAX} are allowed")
    for topic in topics:
        if not isinstance(topic, str) or len(topic) > IDENTIFIER_MAX or CONTROL.search(topic):
            raise BadInput(f"each topic must be a string of at most {IDENTIFIER_MAX} characters "
                           "without control characters")
    created_at = created_at or utcnow()
    return Memory(
        memory_id=memory_id or str(uuid.uuid4()),
        memory=memory,
        topics=topics,
        user_id=record.get("user_id"),
        agent_id=record.get("agent_id"),
        team_id=record.get("team_id"),
        created_at=created_at,
        updated_at=updated_at or created_at,
    )


def _rfc3339(record: dict, key: str) -> datetime | None:
    value = record.get(key)
    if value is None:
        return None
    problem = f"{key} must be an RFC 3339 date-time with a time zone, like 2025-01-01T00:00:00Z"
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise BadInput(problem)
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadInput(problem) from None


def _write(repository: MemoryRepository, batch: list[Memory], lines_of: dict[str, int],
           stored: int) -> int:
    """Store one batch; how many memories it held."""
    try:
        repository.insert_new(batch)
    except MemoryExists as error:
        line = min(lines_of[memory_id] for memory_id in error.memory_ids)
        memory_id = next(m for m, n in lines_of.items() if n == line)
        raise BadInput(
            f"line {line}: a memory with memory_id {memory_id!r} already exists; "
            f"{_so_far(stored, min(lines_of.values()))}"
        ) from None
    return len(batch)


def _so_far(imported: int, first_line: int) -> str:
    if not imported:
        return "nothing was imported"
    return f"{_were(imported)} imported before line {first_line}, none from there on"


def _were(count: int) -> str:
    return "1 memory was" if count == 1 else f"{count} memories were"


# -- import from Agno --------------------------------------------------------------------------


def import_agno(repository: MemoryRepository, url: str, table: str,
                schema: str | None) -> Iterator[Moved]:
    """Copy the memories of an Agno database's memory table; the Agno database is only read."""
    try:
        source = AgnoMemorySource(url, table, schema)
    except NotAnAgnoMemoryTable as error:
        raise BadInput(str(error)) from None
    stored = 0
    try:
        for rows in source.pages(BATCH_SIZE):
            batch = []
            for row in rows:
                try:
                    batch.append(agno_memory(row))
                except BadInput as problem:
                    raise BadInput(f"memory {row.memory_id!r} of {source.name}: {problem}; "
                                   f"{_so_far_agno(stored)}") from None
            try:
                repository.insert_new(batch)
            except MemoryExists as error:
                raise BadInput(f"a memory with memory_id {error.memory_ids[0]!r} already exists; "
                               f"{_so_far_agno(stored)}") from None
            stored += len(batch)
            yield Moved(stored)
    finally:
        source.close()


def agno_memory(row) -> Memory:
    """Agno keeps the text as JSON (usually a JSON string) and times as epoch seconds."""
    memory = row.memory
    if memory is not None and not isinstance(memory, str):
        memory = orjson.dumps(memory).decode()
    if not isinstance(row.memory_id, str) or not row.memory_id:
        raise BadInput("memory_id must be a non-empty string")
    record = {"memory_id": row.memory_id, "memory": memory, "topics": row.topics,
              "user_id": row.user_id, "agent_id": row.agent_id, "team_id": row.team_id}
    return checked_memory(record, _epoch(row.created_at, "created_at"), _epoch(row.updated_at, "updated_at"))


def _epoch(value, key: str) -> datetime | None:
    if value is None:
        if key == "created_at":
            raise BadInput("created_at is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{key} must be epoch seconds, not {value!r}")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        raise BadInput(f"{key} {value!r} is not a time in epoch seconds") from None


def _so_far_agno(imported: int) -> str:
    if not imported:
        return "nothing was imported"
    return f"{_were(imported)} imported before it, in memory_id order"
