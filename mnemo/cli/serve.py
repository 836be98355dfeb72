"""mnemo serve: check everything that can be checked before serving, then serve."""

from __future__ import annotations

import logging
import os

import click

from storage import Status

from .. import server
from ..config import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_DATABASE_URL,
    DEFAULT_DB_ID,
    DEFAULT_EMBEDDINGS,
    DEFAULT_EMBEDDINGS_BATCH_SIZE,
    DEFAULT_EMBEDDINGS_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_IDEMPOTENCY_TTL,
    DEFAULT_JWT_ALGORITHM,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_TOKEN_BYTES,
    DEFAULT_OPTIMIZE_TIMEOUT_S,
    DEFAULT_RATE_LIMIT_PREFIX,
    DEFAULT_TABLE,
)
from ..contract import Contract, ContractError
from .common import (
    CommandFailed,
    WrongInput,
    config_option,
    configure_logging,
    database_trouble,
    load_settings,
    open_catalog,
    reason,
)
from .migrate import upgraded

log = logging.getLogger("mnemo")

# Each worker is an event loop plus a thread pool bound by the GIL: one per core keeps every
# core busy without processes fighting over them.
CORES = os.cpu_count() or 1
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# Every variable serve reads, as its help lists them (docs/OPERATIONS.md has the full story).
ENVIRONMENT = (
    ("MNEMO_DATABASE_URL", f"SQLAlchemy URL of the database (default {DEFAULT_DATABASE_URL})."),
    ("MNEMO_DB_ID", f"The id clients pass as db_id (default {DEFAULT_DB_ID})."),
    ("MNEMO_TABLE", f"The memory table clients pass as table (default {DEFAULT_TABLE})."),
    ("MNEMO_CONFIG", "TOML file declaring several databases, in place of the three above "
                     "(--config overrides it)."),
    ("MNEMO_SECURITY_KEY", "Bearer key that admits its holder as an administrator."),
    ("OS_SECURITY_KEY", "Read when MNEMO_SECURITY_KEY is not set, as in Agno."),
    ("MNEMO_JWT_VERIFICATION_KEY", "PEM public key or shared secret that checks JWTs (without "
                                   "one, JWTs are refused)."),
    ("JWT_VERIFICATION_KEY", "Read when MNEMO_JWT_VERIFICATION_KEY is not set, as in Agno."),
    ("MNEMO_JWT_ALGORITHM", f"The only algorithm a JWT may use (default {DEFAULT_JWT_ALGORITHM})."),
    ("MNEMO_JWT_AUDIENCE", "The aud every JWT must carry (default: not checked)."),
    ("MNEMO_MAX_BODY_BYTES", f"Largest request body; past it 413 (default {DEFAULT_MAX_BODY_BYTES})."),
    ("MNEMO_MAX_HEADER_BYTES", "Largest request head; past it 431, or 414 for the URL alone "
                               f"(default {DEFAULT_MAX_HEADER_BYTES})."),
    ("MNEMO_HEADER_TIMEOUT", "Seconds a client has to send a request's head; past them 408 "
                             f"(default {DEFAULT_HEADER_TIMEOUT_S})."),
    ("MNEMO_BODY_TIMEOUT", "Seconds a client has to send a request's body; past them 408 "
                           f"(default {DEFAULT_BODY_TIMEOUT_S})."),
    ("MNEMO_MAX_TOKEN_BYTES", f"Longest bearer token; past it 401 (default {DEFAULT_MAX_TOKEN_BYTES})."),
    ("MNEMO_RATE_LIMIT", "Requests each caller may make, e.g. 100/second; past it 429 "
                         "(default: no limit)."),
    ("MNEMO_RATE_LIMIT_STORAGE", "Where the rate limit is counted: memory:// (each worker on "
                                 "its own, the default) or a redis:// URL (one count for all)."),
    ("MNEMO_RATE_LIMIT_PREFIX", "What the rate limit's keys in Redis start with "
                                f"(default {DEFAULT_RATE_LIMIT_PREFIX})."),
    ("MNEMO_CORS_ORIGINS", "Comma-separated origins browsers may call from (default: CORS off)."),
    ("MNEMO_IDEMPOTENCY_TTL", "Seconds an Idempotency-Key of a create is remembered "
                              f"(default {int(DEFAULT_IDEMPOTENCY_TTL.total_seconds())})."),
    ("MNEMO_OPENAI_BASE_URL", "OpenAI-compatible API that optimize-memories asks (without one, "
                              "it answers 400)."),
    ("OPENAI_BASE_URL", "Read when MNEMO_OPENAI_BASE_URL is not set."),
    ("OPENAI_API_KEY", "The key sent to that API."),
    ("MNEMO_OPTIMIZE_MODEL", "The model optimize-memories uses when a request names none."),
    ("MNEMO_OPTIMIZE_TIMEOUT", "Seconds to wait for the model's answer; past them 504 "
                               f"(default {DEFAULT_OPTIMIZE_TIMEOUT_S})."),
    ("MNEMO_EMBEDDINGS", "Where search by meaning gets its vectors: wordllama (bundled, in "
                         "process), openai (an OpenAI-compatible embeddings API) or none (off) "
                         f"(default {DEFAULT_EMBEDDINGS})."),
    ("MNEMO_EMBEDDINGS_MODEL", "The embedding model's id, for openai (required there)."),
    ("MNEMO_EMBEDDINGS_BASE_URL", "The embeddings API, for openai (default: OPENAI_BASE_URL)."),
    ("MNEMO_EMBEDDINGS_API_KEY", "The key sent to it (default: OPENAI_API_KEY)."),
    ("MNEMO_EMBEDDINGS_TIMEOUT", "Seconds to wait for its answer "
                                 f"(default {DEFAULT_EMBEDDINGS_TIMEOUT_S})."),
    ("MNEMO_EMBEDDINGS_BATCH_SIZE", "Most texts sent in one request "
                                    f"(default {DEFAULT_EMBEDDINGS_BATCH_SIZE})."),
    ("MNEMO_VALIDATE_RESPONSES", "Check every response against the contract (default false)."),
    ("MNEMO_METRICS_TOKEN", "Bearer token for the Prometheus scraper: opens /metrics and "
                            "nothing else."),
    ("MNEMO_LOG_FORMAT", "text or json (one object per line) for every line logged "
                         "(default text)."),
)


class ServeCommand(click.Command):
    """serve's help ends with the environment it reads, one variable a line."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Environment"):
            formatter.write_dl(ENVIRONMENT)
        super().format_epilog(ctx, formatter)


@click.command(cls=ServeCommand, short_help="Serve the memory API over HTTP.")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, metavar="HOST", help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=7777, show_default=True,
              metavar="PORT", help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=CORES, metavar="N",
              show_default=f"one per core, {CORES} here",
              help="Worker processes; more than one runs gunicorn with uvicorn workers.")
@click.option("--migrate", is_flag=True,
              help="First upgrade every table family that is behind the current schema revision "
              "(without it, serve refuses such a database and exits 1; families that do not "
              "exist yet are always created).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info",
              show_default=True, help="How much to log.")
def serve(config: str | None, host: str, port: int, workers: int, migrate: bool,
          log_level: str) -> None:
    """Serve the memory API over HTTP.

    Settings come from the environment (below) or, for several databases, a config file
    (--config or MNEMO_CONFIG). Before serving, serve checks every setting, the API document,
    that the port is free and that every configured memory table can be served, creating
    those that do not exist yet.

    Exit codes: 0 served until stopped; 1 the port is taken, a database cannot be reached or a
    table needs `mnemo migrate`; 2 a setting or the API document is wrong.
    """
    configure_logging(log_level)
    settings = load_settings(config)
    try:
        Contract.load()
    except ContractError as error:
        raise WrongInput(str(error)) from None
    try:
        server.check_port(host, port)
    except OSError as error:
        raise CommandFailed(f"cannot listen on {host}:{port}: {error.strerror}") from None
    catalog = open_catalog(settings)
    with database_trouble(catalog, lambda error: f"cannot open the database: {reason(error)}"):
        # The schema is settled once here, before any worker starts, so that workers never
        # race each other to create or migrate it.
        for database in catalog.databases.values():
            for before in database.prepare(migrate=migrate):
                if before.status is not Status.CURRENT:
                    log.info("database %r, table %r: %s", database.db_id, before.table, upgraded(before))
    try:
        server.run(host, port, workers, log_level.lower(), config)
    except server.ServerError as error:
        raise CommandFailed(str(error)) from None
