"""Every error leaves the service as JSON ``{"detail": <string>, "error_code": <string>}``.

Connexion's own problems (validation, auth, media type), routing errors, storage failures and
anything unexpected all pass through here. Internals (tracebacks, SQL, paths) are logged,
never sent.
"""

from __future__ import annotations

import logging

import orjson
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionResponse
from starlette.exceptions import HTTPException

from storage import (
    CatalogError,
    DatabaseUnavailable,
    IdempotencyConflict,
    IdempotencyKeyReused,
    MemoriesChanged,
    SemanticSearchUnavailable,
    TableWithoutDatabase,
    VersionMismatch,
)

from .api_errors import ApiError
from .contract import Contract
from .workarounds.openapi31 import MalformedBodyProblem

log = logging.getLogger("mnemo")

ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "TOO_MANY_REQUESTS",
    431: "REQUEST_HEADER_FIELDS_TOO_LARGE",
    500: "INTERNAL_SERVER_ERROR",
    501: "NOT_IMPLEMENTED",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}

# Seconds a client should wait before retrying when the database is away.
RETRY_AFTER_S = 2
# Set on every request by mnemo.edge.RequestId, before anything else sees it.
REQUEST_ID_HEADER = "x-request-id"


def error_body(status: int, detail: str, error_code: str | None = None,
               request_id: str | None = None) -> dict:
    body = {"detail": detail, "error_code": error_code or ERROR_CODES.get(status, "ERROR")}
    if request_id:
        body["request_id"] = request_id
    return body


def json_error(request, status: int, detail: str, error_code: str | None = None,
               headers: dict | None = None, extra: dict | None = None) -> ConnexionResponse:
    body = error_body(status, detail, error_code, request_id(request))
    return ConnexionResponse(
        status_code=status,
        body=orjson.dumps({**extra, **body} if extra else body),
        content_type="application/json",
        headers=headers,
    )


def request_id(request) -> str | None:
    return request.headers.get(REQUEST_ID_HEADER) if request is not None else None


def about(request) -> dict:
    """``extra`` for a log line about ``request``: its id, a field of its own in JSON logs."""
    return {"fields": {"request_id": request_id(request)}}


def on_problem(request, problem: ProblemException) -> ConnexionResponse:
    status = problem.status
    headers = dict(problem.headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if status >= 500:
        log.error("request %s: %s: %s", request_id(request), problem.title, problem.detail,
                  extra=about(request))
        return json_error(request, status, "Internal server error")
    code = "INVALID_JSON" if isinstance(problem, MalformedBodyProblem) else None
    return json_error(request, status, str(problem.detail or problem.title), code, headers)


def http_exception_handler(contract: Contract):
    def on_http_exception(request, error: HTTPException) -> ConnexionResponse:
        status = error.status_code
        if status >= 500:
            log.error("request %s: HTTP %s: %s", request_id(request), status, error.detail,
                      extra=about(request))
            return json_error(request, status, "Internal server error")
        headers = dict(error.headers or {})
        if status == 405:
            # Routing names only the route it tried; the client is owed every method the
            # document declares for the path.
            methods = contract.allowed_methods(request.url.path)
            if methods:
                headers["Allow"] = methods
        detail = error.detail if isinstance(error.detail, str) else None
        if status == 404:
            # The router's own words ("Not Found", or Werkzeug's advice to check the spelling
            # of a URL typed by hand) say less than which path it was.
            detail = f"No operation of this API is at {request.scope['path'][:200]}"
        return json_error(request, status, detail or ERROR_CODES.get(status, "Error"), headers=headers)

    return on_http_exception


def on_catalog_error(request, error: CatalogError) -> ConnexionResponse:
    status = 400 if isinstance(error, TableWithoutDatabase) else 404
    return json_error(request, status, str(error))


def on_database_unavailable(request, _error: DatabaseUnavailable) -> ConnexionResponse:
    # Storage has logged the driver's own words; they stay in the log (they name hosts and files).
    log.error("request %s: the database is unavailable", request_id(request), extra=about(request))
    return json_error(
        request,
        503,
        "The database is unavailable; retry shortly",
        "DATABASE_UNAVAILABLE",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def on_version_mismatch(request, error: VersionMismatch) -> ConnexionResponse:
    return json_error(request, 412, f"Memory with ID {error} does not exist or has changed since "
                      "the version If-Match names; nothing was changed", "PRECONDITION_FAILED")


def on_idempotency_conflict(request, error: IdempotencyConflict) -> ConnexionResponse:
    if isinstance(error, IdempotencyKeyReused):
        return json_error(request, 409, "This Idempotency-Key was already used for a different "
                          "request; use a new key for a new memory", "IDEMPOTENCY_KEY_REUSED")
    return json_error(request, 409, "The memory this Idempotency-Key created has since been "
                      "deleted", "IDEMPOTENT_MEMORY_DELETED")


def on_memories_changed(request, _error: MemoriesChanged) -> ConnexionResponse:
    return json_error(request, 409, "The user's memories changed while the model was summarizing "
                      "them; nothing was applied. Read them again, or retry the request",
                      "MEMORIES_CHANGED")


def on_search_unavailable(request, error: SemanticSearchUnavailable) -> ConnexionResponse:
    if error.code == "EMBEDDING_MODEL_UNAVAILABLE":
        log.error("request %s: %s", request_id(request), error, extra=about(request))
        return json_error(request, 503, "The embedding model cannot embed the question right now; "
                          "retry shortly, or search with search_mode=substring", error.code,
                          headers={"Retry-After": str(RETRY_AFTER_S)})
    return json_error(request, 400, str(error), error.code)


def on_api_error(request, error: ApiError) -> ConnexionResponse:
    return json_error(request, error.status, error.detail, error.error_code, error.headers, error.extra)


def on_unexpected(request, error: Exception) -> ConnexionResponse:
    log.error("request %s: unhandled error", request_id(request), exc_info=error, extra=about(request))
    return json_error(request, 500, "Internal server error")


def handlers(contract: Contract) -> list[tuple[type[Exception], object]]:
    """(exception class, handler) pairs for the app, most specific first."""
    return [
        (ProblemException, on_problem),
        (HTTPException, http_exception_handler(contract)),
        (CatalogError, on_catalog_error),
        (DatabaseUnavailable, on_database_unavailable),
        (VersionMismatch, on_version_mismatch),
        (IdempotencyConflict, on_idempotency_conflict),
        (MemoriesChanged, on_memories_changed),
        (SemanticSearchUnavailable, on_search_unavailable),
        (ApiError, on_api_error),
        (Exception, on_unexpected),
    ]
