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
from .repository import Memory, MemoryExists, MemoryQuery, MemoryRepository, Page, UserStats

__all__ = [
    "Catalog",
    "CatalogError",
    "Database",
    "DatabaseUnavailable",
    "Memory",
    "MemoryExists",
    "MemoryQuery",
    "MemoryRepository",
    "Page",
    "TableWithoutDatabase",
    "UnknownDatabase",
    "UnknownTable",
    "UserStats",
]
