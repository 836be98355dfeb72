"""Settings, read from the environment once at startup."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///./memories.db"
DEFAULT_DB_ID = "mnemo"
DEFAULT_TABLE = "mnemo_memories"

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}

# A table name becomes part of other tables' and indexes' names, which PostgreSQL caps at 63.
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


class ConfigError(ValueError):
    """A setting has a value Mnemo cannot use."""


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


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    db_id: str = DEFAULT_DB_ID
    table: str = DEFAULT_TABLE
    security_key: str | None = None
    validate_responses: bool = False

    def __post_init__(self):
        if not TABLE_NAME.fullmatch(self.table):
            raise ConfigError(
                f"table name {self.table!r} must be 1-40 letters, digits or underscores, "
                "not starting with a digit"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("MNEMO_DATABASE_URL") or DEFAULT_DATABASE_URL,
            db_id=env.get("MNEMO_DB_ID") or DEFAULT_DB_ID,
            table=env.get("MNEMO_TABLE") or DEFAULT_TABLE,
            # Agno AgentOS reads OS_SECURITY_KEY; honouring it makes switching over a no-op.
            security_key=env.get("MNEMO_SECURITY_KEY") or env.get("OS_SECURITY_KEY") or None,
            validate_responses=_flag(env, "MNEMO_VALIDATE_RESPONSES", False),
        )
