"""The application factory: the contract, the storage and the glue between them."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import connexion
import orjson
import yaml
from connexion.jsonifier import Jsonifier
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions

from handlers._shared import CATALOG, METRICS, MODEL, to_json
from storage import Catalog, Database

from . import bridge, dispatch, errors, metrics, oas31
from .auth import Callers, bearer_security
from .config import Settings
from .edge import (
    CommaSeparatedArrays,
    Cors,
    LimitBodySize,
    OneContentType,
    RefuseControlCharactersInPath,
    RequestId,
    array_query_parameters,
    operation_names,
)
from .ratelimit import RateLimitPerCaller

log = logging.getLogger("mnemo")

_PACKAGE = Path(__file__).resolve().parent
# Installed, the document ships inside the package; in a source checkout it is the
# repository's own openapi.yaml, one level up.
DOCUMENT_LOCATIONS = (_PACKAGE / "openapi.yaml", _PACKAGE.parent / "openapi.yaml")


def document_path() -> Path:
    for path in DOCUMENT_LOCATIONS:
        if path.is_file():
            return path
    raise FileNotFoundError("openapi.yaml not found in " + " or ".join(map(str, DOCUMENT_LOCATIONS)))


def load_document(path: Path | None = None) -> dict:
    """The API document, checked by openapi-spec-validator (InvalidSpecification if broken)."""
    with open(path or document_path(), encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    oas31.validate_document(document)
    return document


class _Orjson:
    """The json-module interface Connexion's Jsonifier expects, backed by orjson."""

    @staticmethod
    def dumps(data, **_options) -> str:
        return to_json(data).decode()

    @staticmethod
    def loads(data):
        return orjson.loads(data)


def build_catalog(settings: Settings) -> Catalog:
    return Catalog([Database.connect(d.db_id, d.url, list(d.tables), settings.idempotency_ttl)
                    for d in settings.databases])


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> connexion.FlaskApp:
    """A ready-to-serve Connexion app over ``catalog`` (by default the configured databases,
    whose missing table families are created; storage.SchemaBehind if one is behind head)."""
    settings = settings or Settings.from_env()
    document = load_document()
    if catalog is None:
        catalog = build_catalog(settings)
        catalog.prepare()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        catalog.dispose()

    oas31.install()
    dispatch.install()
    app = connexion.FlaskApp(
        __name__,
        lifespan=lifespan,
        jsonifier=Jsonifier(_Orjson),
        security_map={"bearer": bearer_security(settings.security_key, settings.jwt, settings.metrics_token,
                                                settings.max_token_bytes)},
        validator_map=oas31.VALIDATOR_MAP,
        uri_parser_class=oas31.URIParser,
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/docs"),
    )
    bridge.install(app)
    dispatch.only_routed(app.app)
    app.app.request_class = oas31.ParsedJSONRequest
    app.add_api(document, validate_responses=settings.validate_responses)
    app.app.extensions[CATALOG] = catalog
    app.app.extensions[METRICS] = metrics.Exposition(catalog)
    metrics.watch_pools(catalog)
    app.app.extensions[MODEL] = settings.model
    for error_class, handler in errors.handlers(document):
        app.add_error_handler(error_class, handler)
    # Each one is added inside the ones before it: RequestId sees every request first.
    edge = MiddlewarePosition.BEFORE_EXCEPTION
    app.add_middleware(RequestId, position=edge, operations=operation_names(document))
    if settings.cors_origins:
        app.add_middleware(Cors, position=edge, **cors_options(settings.cors_origins))
    app.add_middleware(RefuseControlCharactersInPath, position=edge)
    app.add_middleware(OneContentType, position=edge)
    if settings.rate_limit is not None:
        callers = Callers(settings.security_key, settings.jwt, settings.metrics_token,
                          settings.max_token_bytes)
        app.add_middleware(RateLimitPerCaller, position=edge, limit=settings.rate_limit, caller_of=callers)
    app.add_middleware(LimitBodySize, position=edge, max_bytes=settings.max_body_bytes)
    app.add_middleware(CommaSeparatedArrays, position=edge, names=array_query_parameters(document))
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
