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
environment: the security key and the JWT verification key are never read from the file.
Everything about who may call and how much (JWT, body, head and token limits, rate limit, CORS,
how long a client may take to send a request), the language model optimize-memories uses, and
the embeddings search by meaning compares, come from the environment too.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from storage import Catalog, Database

if TYPE_CHECKING:
    from .embeddings import OpenAIEmbedder, WordLlamaEmbedder

N = TypeVar("N", int, float)

DEFAULT_DATABASE_URL = "sqlite:///./memories.db"
DEFAULT_DB_ID = "mnemo"
DEFAULT_TABLE = "mnemo_memories"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# A request's head (request line and headers). The contract allows a search_content of 5000
# characters, up to 45,000 bytes of URL once percent-encoded: the limit must leave room for that
# beside a token and whatever headers proxies add.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
# Smaller than this would refuse ordinary requests.
MIN_HEADER_BYTES = 1024
# Several times a large identity provider's token; Agno's are a few hundred bytes.
DEFAULT_MAX_TOKEN_BYTES = 8 * 1024
# A head is one packet or a few on any working network.
DEFAULT_HEADER_TIMEOUT_S = 10
# A body of the default largest size at about 35 KB/s.
DEFAULT_BODY_TIMEOUT_S = 30
DEFAULT_RATE_LIMIT_STORAGE = "memory://"
DEFAULT_RATE_LIMIT_PREFIX = "mnemo"
RATE_LIMIT_STORAGES = ("memory://", "redis://", "rediss://", "redis+unix://", "redis+sentinel://",
                       "redis+cluster://")
DEFAULT_JWT_ALGORITHM = "RS256"
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_FORMAT = "text"
# Long enough for any client's retries (hours of an outage included), short enough that the
# keys of a busy day stay a small table.
DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)
DEFAULT_OPTIMIZE_TIMEOUT_S = 60
# Where prometheus_client's multiprocess mode keeps the workers' values (mnemo.metrics). Here,
# not in mnemo.metrics, so that the CLI can name it without importing prometheus_client.
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
# The only provider optimize-memories reaches models through: the OpenAI-compatible API.
MODEL_PROVIDER = "openai"
# Where search by meaning gets its vectors (mnemo.embeddings); "none" turns it off.
EMBEDDING_PROVIDERS = ("wordllama", "openai", "none")
DEFAULT_EMBEDDINGS = "wordllama"
# Storage waits on the model only in its background worker, which retries later: a slow server
# should not hold the worker long.
DEFAULT_EMBEDDINGS_TIMEOUT_S = 10
DEFAULT_EMBEDDINGS_BATCH_SIZE = 64

# The algorithms a JWT may be signed with: HMAC with a shared secret, or a signature checked
# with a public key. Never "none".
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"})
JWT_ALGORITHMS = HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS
RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE_LIMIT = re.compile(r"\s*([1-9][0-9]{0,8})\s*/\s*(second|minute|hour|day)s?\s*", re.IGNORECASE)

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}

# A table name becomes part of other tables' and indexes' names, which PostgreSQL caps at 63.
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
DB_ID = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
# The control characters no identifier may contain (the document's Identifier), nor a URL path.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


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
class JwtConfig:
    """How bearer JWTs are checked: Agno AgentOS's scheme (key, algorithm, optional audience)."""

    verification_key: str = field(repr=False)
    algorithm: str = DEFAULT_JWT_ALGORITHM
    audience: str | None = None

    def __post_init__(self):
        if self.algorithm not in JWT_ALGORITHMS:
            raise ConfigError(f"MNEMO_JWT_ALGORITHM {self.algorithm!r} is not one of "
                              f"{', '.join(sorted(JWT_ALGORITHMS))}")
        if not self.verification_key.strip():
            raise ConfigError("the JWT verification key is empty")
        self.key  # noqa: B018 -- parsed now, so that an unusable key stops the server at startup

    @cached_property
    def key(self):
        """The verification key as PyJWT uses it, parsed once.

        A shared secret for HMAC (at least as long as the hash, RFC 7518 section 3.2, and never a
        PEM key: that is how HS/RS confusion attacks start); a PEM public key otherwise.
        """
        from jwt.algorithms import get_default_algorithms
        from jwt.exceptions import InvalidKeyError

        algorithm = get_default_algorithms()[self.algorithm]
        if self.algorithm in HMAC_ALGORITHMS:
            minimum = int(self.algorithm[2:]) // 8
            if len(self.verification_key.encode()) < minimum:
                raise ConfigError(f"the {self.algorithm} secret must be at least {minimum} bytes long")
        elif "PRIVATE KEY" in self.verification_key:
            raise ConfigError("the JWT verification key must be a public key, not a private one")
        try:
            return algorithm.prepare_key(self.verification_key)
        except (InvalidKeyError, ValueError, TypeError):
            kind = "a shared secret" if self.algorithm in HMAC_ALGORITHMS else "a PEM public key"
            raise ConfigError(f"the JWT verification key is not {kind} usable with "
                              f"{self.algorithm}") from None


@dataclass(frozen=True)
class ModelConfig:
    """The language model optimize-memories asks, over the OpenAI-compatible chat API."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    timeout_s: float = DEFAULT_OPTIMIZE_TIMEOUT_S

    def __post_init__(self):
        if not self.timeout_s > 0:
            raise ConfigError("MNEMO_OPTIMIZE_TIMEOUT must be a number of seconds above 0")
        if self.base_url is not None and not re.match(r"https?://", self.base_url):
            raise ConfigError(f"the model base URL must start with http:// or https://, not "
                              f"{self.base_url!r}")

    @cached_property
    def endpoint(self) -> str | None:
        """The chat-completions URL under ``base_url``, built once."""
        return None if self.base_url is None else self.base_url.rstrip("/") + "/chat/completions"

    @cached_property
    def default_model_id(self) -> str | None:
        """The model id ``model`` names, parsed once: the id of ``openai:<id>``, else ``model``
        as it is."""
        if self.model is None:
            return None
        model_id = openai_model_id(self.model)
        return self.model if model_id is None else model_id


def openai_model_id(name: str) -> str | None:
    """The id in a model name written ``openai:<id>`` (stripped, possibly empty); None when the
    name is not written that way."""
    provider, colon, model_id = name.partition(":")
    if colon and provider.strip().lower() == MODEL_PROVIDER:
        return model_id.strip()
    return None


@dataclass(frozen=True)
class EmbeddingsConfig:
    """Where search by meaning gets its vectors: ``provider`` is ``wordllama`` (bundled,
    in process), ``openai`` (an OpenAI-compatible embeddings API at ``base_url``, asked for
    ``model``) or ``none`` (search by meaning off)."""

    provider: str = DEFAULT_EMBEDDINGS
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_EMBEDDINGS_TIMEOUT_S
    batch_size: int = DEFAULT_EMBEDDINGS_BATCH_SIZE

    def __post_init__(self):
        if self.provider not in EMBEDDING_PROVIDERS:
            raise ConfigError(f"MNEMO_EMBEDDINGS must be {', '.join(EMBEDDING_PROVIDERS[:-1])} or "
                              f"{EMBEDDING_PROVIDERS[-1]}, not {self.provider!r}")
        if not self.timeout_s > 0:
            raise ConfigError("MNEMO_EMBEDDINGS_TIMEOUT must be a number of seconds above 0")
        if self.batch_size < 1:
            raise ConfigError("MNEMO_EMBEDDINGS_BATCH_SIZE must be at least 1")
        if self.provider != "openai":
            return
        if not self.model:
            raise ConfigError("MNEMO_EMBEDDINGS=openai needs MNEMO_EMBEDDINGS_MODEL, the embedding "
                              "model's id (for example text-embedding-3-small)")
        if self.base_url is None:
            raise ConfigError("MNEMO_EMBEDDINGS=openai needs MNEMO_EMBEDDINGS_BASE_URL (or "
                              "OPENAI_BASE_URL), such as https://api.openai.com/v1")
        if not _http_url(self.base_url):
            raise ConfigError(f"the embeddings base URL must be an http:// or https:// URL with a "
                              f"host, not {self.base_url!r}")

    def embedder(self) -> WordLlamaEmbedder | OpenAIEmbedder | None:
        """This process's embedder for these settings (one, however often asked, from any
        thread); None when search by meaning is off."""
        if self.provider == "none":
            return None
        with _EMBEDDERS_LOCK:
            embedder = _EMBEDDERS.get(self)
            if embedder is None:
                # Imported here: numpy and the provider load only in a process that embeds.
                from . import embeddings

                if self.provider == "wordllama":
                    embedder = embeddings.WordLlamaEmbedder()
                else:
                    embedder = embeddings.OpenAIEmbedder(self.base_url, self.model, self.api_key,
                                                         self.timeout_s, self.batch_size)
                _EMBEDDERS[self] = embedder
            return embedder


_EMBEDDERS: dict[EmbeddingsConfig, object] = {}
_EMBEDDERS_LOCK = threading.Lock()


def _http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", url)


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` requests per ``period_s`` seconds for each caller, counted in
    ``storage`` (this process's memory, or Redis, shared) under keys starting with ``prefix``."""

    count: int
    period_s: int
    # A Redis URL may hold a password.
    storage: str = field(default=DEFAULT_RATE_LIMIT_STORAGE, repr=False)
    prefix: str = DEFAULT_RATE_LIMIT_PREFIX

    def __post_init__(self):
        if not self.storage.startswith(RATE_LIMIT_STORAGES):
            scheme = self.storage.partition(":")[0][:20]
            raise ConfigError(f"MNEMO_RATE_LIMIT_STORAGE must be memory:// or a redis:// URL "
                              f"({', '.join(RATE_LIMIT_STORAGES[1:])}), not {scheme}:")
        if not self.prefix or CONTROL_CHARACTERS.search(self.prefix):
            raise ConfigError("MNEMO_RATE_LIMIT_PREFIX must be printable characters")

    @classmethod
    def parse(cls, text: str, **options: str) -> RateLimit:
        match = RATE_LIMIT.fullmatch(text)
        if not match:
            raise ConfigError(f"MNEMO_RATE_LIMIT must look like 100/second (per second, minute, "
                              f"hour or day), not {text!r}")
        return cls(int(match.group(1)), RATE_PERIODS[match.group(2).lower()], **options)


@dataclass(frozen=True)
class ServerLimits:
    """What the HTTP server allows a connection before the app sees its request
    (mnemo.protocol): the size of a request's head and the time to receive it and its body."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S

    def __post_init__(self):
        if self.max_header_bytes < MIN_HEADER_BYTES:
            raise ConfigError(f"MNEMO_MAX_HEADER_BYTES must be at least {MIN_HEADER_BYTES}")
        for name, seconds in (("MNEMO_HEADER_TIMEOUT", self.header_timeout_s),
                              ("MNEMO_BODY_TIMEOUT", self.body_timeout_s)):
            if not seconds > 0:
                raise ConfigError(f"{name} must be a number of seconds above 0")


def server_limits(env: Mapping[str, str] | None = None) -> ServerLimits:
    """``MNEMO_MAX_HEADER_BYTES``, ``MNEMO_HEADER_TIMEOUT`` and ``MNEMO_BODY_TIMEOUT``, checked."""
    env = os.environ if env is None else env
    seconds = "a number of seconds"
    return ServerLimits(
        max_header_bytes=_number(env, "MNEMO_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES),
        header_timeout_s=_number(env, "MNEMO_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT_S, float, seconds),
        body_timeout_s=_number(env, "MNEMO_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_S, float, seconds),
    )


@dataclass(frozen=True)
class Settings:
    databases: tuple[DatabaseConfig, ...] = field(
        default_factory=lambda: (DatabaseConfig(DEFAULT_DB_ID, DEFAULT_DATABASE_URL),)
    )
    security_key: str | None = field(default=None, repr=False)
    validate_responses: bool = False
    jwt: JwtConfig | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    server: ServerLimits = field(default_factory=ServerLimits)
    rate_limit: RateLimit | None = None
    cors_origins: tuple[str, ...] = ()
    # A bearer token that admits its holder to /metrics and nothing else: for the scraper.
    metrics_token: str | None = field(default=None, repr=False)
    log_format: str = DEFAULT_LOG_FORMAT
    idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL
    model: ModelConfig = field(default_factory=ModelConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)

    def __post_init__(self):
        if not self.databases:
            raise ConfigError("at least one database must be configured")
        ids = [database.db_id for database in self.databases]
        shared = next((db_id for db_id in ids if ids.count(db_id) > 1), None)
        if shared is not None:
            raise ConfigError(f"two databases share the id {shared!r}")
        if self.max_body_bytes < 1:
            raise ConfigError("MNEMO_MAX_BODY_BYTES must be at least 1")
        if self.max_token_bytes < 1:
            raise ConfigError("MNEMO_MAX_TOKEN_BYTES must be at least 1")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"MNEMO_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if self.idempotency_ttl <= timedelta(0):
            raise ConfigError("MNEMO_IDEMPOTENCY_TTL must be at least 1 second")

    def database(self, db_id: str | None = None) -> DatabaseConfig:
        """The database called ``db_id``, or the default one."""
        if db_id is None:
            return self.databases[0]
        for database in self.databases:
            if database.db_id == db_id:
                return database
        raise ConfigError(f"no database with id {db_id!r} is configured")

    @property
    def embedder(self) -> WordLlamaEmbedder | OpenAIEmbedder | None:
        """The process's embedder (mnemo.embeddings), or None when search by meaning is off."""
        return self.embeddings.embedder()

    def catalog(self) -> Catalog:
        """The configured databases, not yet opened (ValueError for a URL Mnemo cannot use)."""
        return Catalog([Database.connect(database.db_id, database.url, list(database.tables),
                                         self.idempotency_ttl, self.embedder)
                        for database in self.databases])

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
            jwt=_jwt(env),
            max_body_bytes=_number(env, "MNEMO_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_token_bytes=_number(env, "MNEMO_MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES),
            server=server_limits(env),
            rate_limit=_rate_limit(env),
            cors_origins=tuple(o.strip() for o in env.get("MNEMO_CORS_ORIGINS", "").split(",") if o.strip()),
            metrics_token=env.get("MNEMO_METRICS_TOKEN") or None,
            log_format=log_format(env),
            idempotency_ttl=timedelta(seconds=_number(env, "MNEMO_IDEMPOTENCY_TTL",
                                                      int(DEFAULT_IDEMPOTENCY_TTL.total_seconds()))),
            model=_model(env),
            embeddings=_embeddings(env),
        )


def log_format(env: Mapping[str, str] | None = None) -> str:
    """``MNEMO_LOG_FORMAT``, checked: ``text`` or ``json``."""
    env = os.environ if env is None else env
    value = (env.get("MNEMO_LOG_FORMAT") or DEFAULT_LOG_FORMAT).strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"MNEMO_LOG_FORMAT must be text or json, not {env['MNEMO_LOG_FORMAT']!r}")
    return value


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


def _jwt(env: Mapping[str, str]) -> JwtConfig | None:
    """JWT settings, when a verification key is configured (Agno reads JWT_VERIFICATION_KEY)."""
    key = env.get("MNEMO_JWT_VERIFICATION_KEY") or env.get("JWT_VERIFICATION_KEY")
    if not key:
        for name in ("MNEMO_JWT_ALGORITHM", "MNEMO_JWT_AUDIENCE"):
            if env.get(name):
                raise ConfigError(f"{name} is set but no JWT verification key is "
                                  "(MNEMO_JWT_VERIFICATION_KEY or JWT_VERIFICATION_KEY)")
        return None
    if key.lstrip().startswith("-----BEGIN") and "\n" not in key:
        # A PEM key put on one line of an environment file, with its newlines written as \n.
        key = key.replace("\\n", "\n")
    return JwtConfig(
        verification_key=key,
        algorithm=(env.get("MNEMO_JWT_ALGORITHM") or DEFAULT_JWT_ALGORITHM).strip(),
        audience=env.get("MNEMO_JWT_AUDIENCE") or None,
    )


def _rate_limit(env: Mapping[str, str]) -> RateLimit | None:
    """The rate limit and where it is counted, when one is configured."""
    options = {key: env[name].strip() for key, name in (("storage", "MNEMO_RATE_LIMIT_STORAGE"),
                                                        ("prefix", "MNEMO_RATE_LIMIT_PREFIX"))
               if env.get(name, "").strip()}
    if not env.get("MNEMO_RATE_LIMIT"):
        for name in ("MNEMO_RATE_LIMIT_STORAGE", "MNEMO_RATE_LIMIT_PREFIX"):
            if env.get(name):
                raise ConfigError(f"{name} is set but MNEMO_RATE_LIMIT is not")
        return None
    return RateLimit.parse(env["MNEMO_RATE_LIMIT"], **options)


def _model(env: Mapping[str, str]) -> ModelConfig:
    """Where optimize-memories finds its model; OPENAI_* as the OpenAI SDKs read them."""
    return ModelConfig(
        base_url=(env.get("MNEMO_OPENAI_BASE_URL") or env.get("OPENAI_BASE_URL") or "").strip() or None,
        api_key=env.get("OPENAI_API_KEY") or None,
        model=(env.get("MNEMO_OPTIMIZE_MODEL") or "").strip() or None,
        timeout_s=_number(env, "MNEMO_OPTIMIZE_TIMEOUT", DEFAULT_OPTIMIZE_TIMEOUT_S, float,
                          "a number of seconds"),
    )


def _embeddings(env: Mapping[str, str]) -> EmbeddingsConfig:
    """The embedding provider; an OpenAI-compatible one found, as optimize-memories' model is,
    through OPENAI_BASE_URL and OPENAI_API_KEY unless it has its own."""
    provider = (env.get("MNEMO_EMBEDDINGS") or DEFAULT_EMBEDDINGS).strip().lower()
    if provider != "openai":
        for name in ("MNEMO_EMBEDDINGS_MODEL", "MNEMO_EMBEDDINGS_BASE_URL", "MNEMO_EMBEDDINGS_API_KEY",
                     "MNEMO_EMBEDDINGS_TIMEOUT", "MNEMO_EMBEDDINGS_BATCH_SIZE"):
            if env.get(name, "").strip():
                raise ConfigError(f"{name} is set but MNEMO_EMBEDDINGS is not openai")
        return EmbeddingsConfig(provider=provider)
    model = (env.get("MNEMO_EMBEDDINGS_MODEL") or "").strip()
    # Written as optimize-memories' model may be, openai:<id>; the id is what the server knows.
    model_id = openai_model_id(model)
    return EmbeddingsConfig(
        provider=provider,
        model=(model if model_id is None else model_id) or None,
        base_url=(env.get("MNEMO_EMBEDDINGS_BASE_URL") or env.get("OPENAI_BASE_URL") or "").strip() or None,
        api_key=env.get("MNEMO_EMBEDDINGS_API_KEY") or env.get("OPENAI_API_KEY") or None,
        timeout_s=_number(env, "MNEMO_EMBEDDINGS_TIMEOUT", DEFAULT_EMBEDDINGS_TIMEOUT_S, float,
                          "a number of seconds"),
        batch_size=_number(env, "MNEMO_EMBEDDINGS_BATCH_SIZE", DEFAULT_EMBEDDINGS_BATCH_SIZE),
    )


def _number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N] = int,
            what: str = "a whole number") -> N:
    """The ``kind`` (int or float) ``name`` holds; ``default`` when it is unset or blank."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return kind(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be {what}, not {raw!r}") from None
