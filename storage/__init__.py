"""Storage: the only code that talks to a database."""

from .catalog import (
    Catalog,
    CatalogError,
    Database,
    TableWithoutDatabase,
    UnknownDatabase,
    UnknownTable,
)
from .database import CONNECTIONS_PER_PROCESS, DatabaseUnavailable
from .migration import FamilyState, SchemaBehind, SchemaError, SchemaUnknown, Status
from .model import (
    HistoryEntry,
    IdempotencyConflict,
    IdempotencyKeyReused,
    IdempotentMemoryGone,
    MemoriesChanged,
    Memory,
    MemoryExists,
    MemoryQuery,
    Page,
    UserStats,
    VersionMismatch,
    unique_topics,
    utcnow,
)
from .repository import MemoryRepository
from .vectors import RANKED_DEPTH, Embedder, SemanticSearchUnavailable

__all__ = [
    "CONNECTIONS_PER_PROCESS",
    "Catalog",
    "CatalogError",
    "Database",
    "DatabaseUnavailable",
    "FamilyState",
    "IdempotencyConflict",
    "IdempotencyKeyReused",
    "IdempotentMemoryGone",
    "HistoryEntry",
    "Memory",
    "MemoriesChanged",
    "MemoryExists",
    "MemoryQuery",
    "MemoryRepository",
    "Page",
    "RANKED_DEPTH",
    "SemanticSearchUnavailable",
    "Embedder",
    "SchemaBehind",
    "SchemaError",
    "SchemaUnknown",
    "Status",
    "TableWithoutDatabase",
    "UnknownDatabase",
    "UnknownTable",
    "UserStats",
    "VersionMismatch",
    "unique_topics",
    "utcnow",
]
