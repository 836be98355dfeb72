"""The application factory: the contract, the storage and the glue between them."""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import connexion
import orjson
from connexion.jsonifier import Jsonifier
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions

from storage import CONNECTIONS_PER_PROCESS, Catalog

from . import embedding_worker, errors, metrics, workarounds
from .auth import Callers, bearer_security
from .config import Settings
from .contract import Contract
from .edge import (
    CommaSeparatedArrays,
    Cors,
    LimitBodySize,
    OneContentType,
    RefuseControlCharactersInPath,
    RequestId,
)
from .extensions import CATALOG, METRICS, MODEL
from .mcp.access import Credentials
from .mcp.http import McpEndpoint, McpService
from .mcp.tools import Toolbox
from .ratelimit import RateLimitPerCaller
from .shapes import to_json
from .ui import UiPage

log = logging.getLogger("mnemo")


class _Orjson:
    """The json-module interface Connexion's Jsonifier expects, backed by orjson."""

    @staticmethod
    def dumps(data, **_options) -> str:
        return to_json(data).decode()

    @staticmethod
    def loads(data):
        return orjson.loads(data)


def create_app(settings: Settings | None = None, catalog: Catalog | None = None,
               contract: Contract | None = None, serves_http: bool = True) -> connexion.FlaskApp:
    """A ready-to-serve Connexion app over ``catalog`` (by default the configured databases,
    whose missing table families are created; storage.SchemaBehind if one is behind head),
    serving ``contract`` (by default openapi.yaml; ContractError if it is not valid).
    ``serves_http=False``: the app only runs handlers for another door (``mnemo mcp``), so an
    API open to anyone is nothing to warn about."""
    settings = settings or Settings.from_env()
    contract = contract or Contract.load()
    if catalog is None:
        catalog = settings.catalog()
        catalog.prepare()
        if settings.embeddings.provider != "none":
            for database in catalog.databases.values():
                missing = database.search_by_meaning_missing()
                if missing:
                    log.warning("database %r: search by meaning is unavailable: %s", database.db_id, missing)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # The worker embeds the memories waiting for a vector, for as long as the app serves.
        with embedding_worker.running(catalog):
            async with assistant_tools.running():
                yield
        catalog.dispose()

    # One handler thread per pooled database connection, for REST and MCP calls together: a
    # handler holds at most one connection at a time, so no thread waits for a connection and
    # none sits idle while requests wait for a thread.
    handlers = ThreadPoolExecutor(max_workers=CONNECTIONS_PER_PROCESS, thread_name_prefix="handler")
    app = workarounds.flask_app(
        __name__,
        handlers=handlers,
        lifespan=lifespan,
        jsonifier=Jsonifier(_Orjson),
        security_map={"bearer": bearer_security(settings.security_key, settings.jwt, settings.metrics_token,
                                                settings.max_token_bytes, warn_if_open=serves_http)},
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/docs"),
    )
    app.add_api(contract.document, validate_responses=settings.validate_responses)
    # MCP at /mcp: the tools run the handlers inside this Flask app.
    assistant_tools = McpService(Toolbox(contract, app.app, handlers), Credentials(settings))
    app.app.extensions[CATALOG] = catalog
    app.app.extensions[METRICS] = metrics.Exposition(catalog)
    metrics.watch_pools(catalog)
    app.app.extensions[MODEL] = settings.model
    for error_class, handler in errors.handlers(contract):
        app.add_error_handler(error_class, handler)
    # Each one is added inside the ones before it: RequestId sees every request first.
    edge = MiddlewarePosition.BEFORE_EXCEPTION
    app.add_middleware(RequestId, position=edge, operations=contract.routing_names)
    if settings.cors_origins:
        app.add_middleware(Cors, position=edge, **cors_options(settings.cors_origins))
    app.add_middleware(RefuseControlCharactersInPath, position=edge)
    app.add_middleware(OneContentType, position=edge)
    if settings.rate_limit is not None:
        callers = Callers(settings.security_key, settings.jwt, settings.metrics_token,
                          settings.max_token_bytes)
        app.add_middleware(RateLimitPerCaller, position=edge, limit=settings.rate_limit, caller_of=callers)
    app.add_middleware(LimitBodySize, position=edge, max_bytes=settings.max_body_bytes)
    app.add_middleware(CommaSeparatedArrays, position=edge, names=contract.array_query_parameters)
    app.add_middleware(McpEndpoint, position=edge, service=assistant_tools)
    app.add_middleware(UiPage, position=edge)
    return app


def cors_options(origins: tuple[str, ...]) -> dict:
    """Browsers on these origins may call the API with a bearer token (never with cookies)."""
    return {
        "allow_origins": list(origins),
        "allow_methods": ["GET", "POST", "PATCH", "DELETE"],
        "allow_headers": ["Authorization", "Content-Type", "X-Request-ID", "If-Match", "Idempotency-Key"],
        "expose_headers": ["X-Request-ID", "Retry-After", "WWW-Authenticate", "ETag", "Idempotent-Replayed"],
        "allow_credentials": False,
        "max_age": 600,
    }
