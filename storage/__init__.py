"""Storage: the only code that talks to a database."""

from .catalog import (
    Catalog,
    CatalogError,
    Database,
    TableWithoutDatabase,
    UnknownDatabase,
    UnknownTable,
)
from .database import DatabaseUnavailable
from .migration import FamilyState, SchemaBehind, SchemaError, SchemaUnknown, Status
from .repository import (
    HistoryEntry,
    IdempotencyConflict,
    IdempotencyKeyReused,
    IdempotentMemoryGone,
    MemoriesChanged,
    Memory,
    MemoryExists,
    MemoryQuery,
    MemoryRepository,
    Page,
    UserStats,
    VersionMismatch,
)

__all__ = [
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
    "SchemaBehind",
    "SchemaError",
    "SchemaUnknown",
    "Status",
    "TableWithoutDatabase",
    "UnknownDatabase",
    "UnknownTable",
    "UserStats",
    "VersionMismatch",
]
