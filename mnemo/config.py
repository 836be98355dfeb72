"""Settings: read once at startup from the environment and, optionally, a TOML file.

With no config file, Mnemo serves one database (``MNEMO_DATABASE_URL``) holding one memory
table. A config file (``MNEMO_CONFIG`` or ``--config``) declares several::

    [[databases]]
    id = "main"                              # what clients pass as db_id
    url = "sqlite:///./memories.db"          # any SQLAlchemy URL Mnemo supports
    tables = ["mnemo_memories", "archive"]   # what clients pass as table; the first is the default

    [[databases]]
    id = "agno"
    url = "postgresql://mnemo@db.internal/agno"
    tables = ["agno_memories"]

The first database is the default when a request names none. Secrets stay in the
environment: the security key is never read from the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./memories.db"
DEFAULT_DB_ID = "mnemo"
DEFAULT_TABLE = "mnemo_memories"

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}

# A table name becomes part of other tables' and indexes' names, which PostgreSQL caps at 63.
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
DB_ID = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


# The keys of one [[databases]] entry of a config file.
DATABASE_KEYS = ("id", "url", "tables")


class ConfigError(ValueError):
    """A setting has a value Mnemo cannot use."""


@dataclass(frozen=True)
class DatabaseConfig:
    db_id: str
    url: str
    tables: tuple[str, ...] = (DEFAULT_TABLE,)

    def __post_init__(self):
        if not DB_ID.fullmatch(self.db_id):
            raise ConfigError(f"database id {self.db_id!r} must be 1-255 printable characters")
        if not self.url:
            raise ConfigError(f"database {self.db_id!r} needs a url")
        if not self.tables:
            raise ConfigError(f"database {self.db_id!r} needs at least one table")
        for table in self.tables:
            if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
                raise ConfigError(
                    f"table name {table!r} must be 1-40 letters, digits or underscores, "
                    "not starting with a digit"
                )
        if len(set(self.tables)) != len(self.tables):
            raise ConfigError(f"database {self.db_id!r} lists a table twice")


@dataclass(frozen=True)
class Settings:
    databases: tuple[DatabaseConfig, ...] = field(
        default_factory=lambda: (DatabaseConfig(DEFAULT_DB_ID, DEFAULT_DATABASE_URL),)
    )
    security_key: str | None = None
    validate_responses: bool = False

    def __post_init__(self):
        if not self.databases:
            raise ConfigError("at least one database must be configured")
        ids = [database.db_id for database in self.databases]
        if len(set(ids)) != len(ids):
            raise ConfigError("two databases share one id")

    def database(self, db_id: str | None = None) -> DatabaseConfig:
        """The database called ``db_id``, or the default one."""
        if db_id is None:
            return self.databases[0]
        for database in self.databases:
            if database.db_id == db_id:
                return database
        raise ConfigError(f"no database with id {db_id!r} is configured")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, config_path: str | None = None) -> Settings:
        env = os.environ if env is None else env
        config_path = config_path or env.get("MNEMO_CONFIG") or None
        if config_path:
            databases = load_databases(Path(config_path))
        else:
            databases = (
                DatabaseConfig(
                    db_id=env.get("MNEMO_DB_ID") or DEFAULT_DB_ID,
                    url=env.get("MNEMO_DATABASE_URL") or DEFAULT_DATABASE_URL,
                    tables=(env.get("MNEMO_TABLE") or DEFAULT_TABLE,),
                ),
            )
        return cls(
            databases=databases,
            # Agno AgentOS reads OS_SECURITY_KEY; honouring it makes switching over a no-op.
            security_key=env.get("MNEMO_SECURITY_KEY") or env.get("OS_SECURITY_KEY") or None,
            validate_responses=_flag(env, "MNEMO_VALIDATE_RESPONSES", False),
        )


def load_databases(path: Path) -> tuple[DatabaseConfig, ...]:
    """The ``[[databases]]`` of a TOML config file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    entries = data.get("databases")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"config file {path} declares no [[databases]]")
    databases = []
    for number, entry in enumerate(entries, start=1):
        unknown = set(entry) - set(DATABASE_KEYS)
        if unknown:
            raise ConfigError(f"{path}: database {number} has unknown keys: {', '.join(sorted(unknown))}")
        if "id" not in entry or "url" not in entry:
            raise ConfigError(f"{path}: database {number} needs an id and a url")
        tables = entry.get("tables", [DEFAULT_TABLE])
        if not isinstance(tables, list):
            raise ConfigError(f"{path}: database {entry['id']!r}: tables must be a list")
        databases.append(DatabaseConfig(str(entry["id"]), str(entry["url"]), tuple(tables)))
    return tuple(databases)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")
