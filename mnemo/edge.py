"""ASGI middleware: the edge every request crosses before Connexion routes it.

In order, outermost first: RequestId (every answer carries an id; every request is counted,
timed and logged under it), CORS when configured (Cors), RefuseControlCharactersInPath,
OneContentType,
the rate limit when configured (mnemo.ratelimit), LimitBodySize, CommaSeparatedArrays.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qs, quote, quote_from_bytes, unquote_plus, unquote_to_bytes

import orjson
from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .config import CONTROL_CHARACTERS
from .errors import REQUEST_ID_HEADER, error_body
from .logs import ACCESS_LOGGER

log = logging.getLogger("mnemo")
access_log = logging.getLogger(ACCESS_LOGGER)

# The header as ASGI carries it, encoded once rather than on every request.
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
# A request id a client may choose: short, and harmless in a header, a log line and JSON.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:~+/=-]{1,128}")
# Characters a path keeps in the access log when it is logged as sent: everything else
# (spaces, quotes, control characters) is percent-encoded, so no path can forge a field.
PATH_SAFE = "/:@!$&'()*+,;=-._~"
ACCESS_LINE = "%s %s %d %.1f ms operation=%s request_id=%s%s"
# Paths no limit applies to: a load balancer's liveness and readiness probes must never be
# turned away.
UNLIMITED_PATHS = frozenset({"/health", "/ready"})
# What in a query may stand for a comma in a value: the comma, or its percent-encoding.
ENCODED_OR_PLAIN_COMMA = re.compile(rb",|%2[cC]")


def request_id_of(scope: Scope) -> str | None:
    return Headers(scope=scope).get(REQUEST_ID_HEADER)


def loggable(path: str) -> str:
    """A path fit for one log line: control characters escaped, length capped."""
    return CONTROL_CHARACTERS.sub(lambda c: f"\\x{ord(c.group()):02x}", path[:300])


async def send_error(scope: Scope, send: Send, status: int, detail: str,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer with the JSON error shape, from middleware that runs before Connexion."""
    body = orjson.dumps(error_body(status, detail, request_id=request_id_of(scope)))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestId:
    """Give every request an id, and account for it once it is answered.

    The id is the client's ``X-Request-ID`` when it is sane, a fresh one otherwise. It goes on
    to Connexion as the request's header and comes back on the answer. Anything that escapes
    everything else is answered as a plain 500 here, never as a stack trace. Once the answer is
    sent, the request is counted and timed (mnemo.metrics) and gets its one line in the access
    log: method, the document's path template (the raw path, percent-encoded, when no operation
    answered), operationId, status, duration, request id and, when the query names one, db_id.
    """

    def __init__(self, app: ASGIApp, operations: Mapping[str, tuple[str, str]] | None = None):
        self.app = app
        # Connexion's name for an operation -> (operationId, the document's path), e.g.
        # handlers.memories.get_memory -> (get_memory, /memories/{memory_id})
        self.operations = dict(operations or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = request_id_of(scope)
        request_id = given if given is not None and SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        header = (REQUEST_ID_HEADER_BYTES, request_id.encode())
        # Connexion's routing writes the operation it chose into this dict (inner middleware
        # copy the scope, but not the dicts in it), which is how the answer is put to its name.
        extensions = dict(scope.get("extensions") or ())
        scope = {**scope, "extensions": extensions,
                 "headers": [*(h for h in scope["headers"] if h[0].lower() != header[0]), header]}
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s: %s %s failed", request_id, scope["method"], loggable(scope["path"]),
                          extra={"fields": {"request_id": request_id}})
            if status:
                raise
            await send_error(scope, send_with_id, 500, "Internal server error")
        finally:
            # status stays 0 when no answer was begun: the client went away first.
            self.account(scope, request_id, status, time.perf_counter() - started)

    def account(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        routed = scope["extensions"].get(ROUTING_CONTEXT, {}).get("operation_id")
        operation, path = self.operations.get(routed, (routed, None)) if routed else (None, None)
        metrics.observe(operation, status, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        if path is None:
            path = quote(scope["path"][:300], safe=PATH_SAFE)
        fields = {"method": scope["method"], "path": path, "operation": operation, "status": status,
                  "duration_ms": round(seconds * 1000, 3), "request_id": request_id}
        db_id = db_id_of(scope)
        if db_id is not None:
            fields["db_id"] = db_id
        # The record made directly: logging's search of the stack for the caller's line costs
        # a good part of the line, and this line always comes from here.
        access_log.handle(access_log.makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, ACCESS_LINE,
            (scope["method"], path, status, seconds * 1000, operation or "-", request_id,
             "" if db_id is None else " db_id=" + orjson.dumps(db_id).decode()),
            None, extra={"fields": fields}))


def db_id_of(scope: Scope) -> str | None:
    """The ``db_id`` query parameter, if the request has one (capped, for the log)."""
    query = scope.get("query_string", b"")
    if b"db_id=" not in query:
        return None
    values = parse_qs(query.decode("utf-8", "replace"), keep_blank_values=True).get("db_id")
    return values[0][:300] if values else None


class RefuseControlCharactersInPath:
    """Answer 422 for a path with control characters in it.

    No identifier may contain one (the document says so), and such a path would not reach the
    right operation anyway: Starlette's mounts match paths with ``.*``, which stops at a
    newline, so Connexion would hand the request to Flask without validating it.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and CONTROL_CHARACTERS.search(scope["path"]):
            await send_error(scope, send, 422, "path: control characters are not allowed in a URL path")
            return
        await self.app(scope, receive, send)


class OneContentType:
    """Answer 400 for a request with more than one Content-Type, and pass on the one it has
    with its media type in lower case and its parameters without spaces.

    Media types are case-insensitive, but Connexion compares them as written, both to choose a
    body's validator and to decide whether a body is JSON: ``Application/JSON`` went
    unvalidated and reached its handler as bytes. Two Content-Type headers reach Flask as one
    value that nothing can parse.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = [i for i, (name, _) in enumerate(scope["headers"]) if name.lower() == b"content-type"]
            if len(found) > 1:
                await send_error(scope, send, 400, "Content-Type must be given at most once")
                return
            if found:
                name, value = scope["headers"][found[0]]
                canonical = canonical_media_type(value)
                if canonical != value:
                    headers = list(scope["headers"])
                    headers[found[0]] = (name, canonical)
                    scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def canonical_media_type(value: bytes) -> bytes:
    """``Application/JSON ; Charset=UTF-8`` as ``application/json;charset=UTF-8``: what
    Connexion's media type checks and its charset lookup can read."""
    media_type, *parameters = value.split(b";")
    parts = [media_type.strip().lower()]
    for parameter in parameters:
        name, equals, parameter_value = parameter.partition(b"=")
        parts.append(name.strip().lower() + equals + parameter_value.strip())
    return b";".join(parts)


class Cors(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the contract's error shape
    (Starlette answers it in plain text)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        body = error_body(400, bytes(response.body).decode(), "CORS_REJECTED",
                          request_headers.get(REQUEST_ID_HEADER))
        headers = {name: value for name, value in response.headers.items()
                   if name not in ("content-type", "content-length")}
        return Response(orjson.dumps(body), 400, headers=headers, media_type="application/json")


class LimitBodySize:
    """Refuse a request body over ``max_bytes`` with 413 before it is read into memory.

    A declared ``Content-Length`` over the limit is refused before anything is read (the
    server holds the client to the length it declared). A body sent in chunks, without a
    length, is gathered here up to the limit, refused at the first chunk past it, and otherwise
    handed on with its length, as if it had been declared (Connexion reads bodies by their
    length).
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"The request body is larger than {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if declared.strip().isdigit() and int(declared) > self.max_bytes:
                await self.refuse(scope, send)
                return
        elif "transfer-encoding" in headers:
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                if len(body) > self.max_bytes:
                    await self.refuse(scope, send)
                    return
                if not message.get("more_body", False):
                    break
            kept = [h for h in scope["headers"] if h[0].lower() != b"transfer-encoding"]
            scope = {**scope, "headers": [*kept, (b"content-length", str(len(body)).encode())]}
            receive = replay(bytes(body), receive)
        await self.app(scope, receive, send)

    async def refuse(self, scope: Scope, send: Send) -> None:
        await send_error(scope, send, 413, self.detail, headers=((b"connection", b"close"),))


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives ``body`` first, then whatever ``receive`` gives."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


class CommaSeparatedArrays:
    """Accept both serialisations of an array query parameter.

    Agno's client repeats the parameter (``topics=a&topics=b``); people and Agno's docs write
    it comma-separated (``topics=a,b``). Every value is percent-decoded before it is split, as
    Agno AgentOS does with the one value it reads, because Python's HTTP clients (httpx,
    requests, urllib) send a comma as ``%2C``: ``topics=a%2Cb`` is ``a`` and ``b``, so an item
    with a comma in it cannot be sent at all. The items go on re-encoded, one pair each.
    """

    def __init__(self, app: ASGIApp, names: frozenset[str]):
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if ENCODED_OR_PLAIN_COMMA.search(query):
            scope = {**scope, "query_string": self.split(query)}
        await self.app(scope, receive, send)

    def split(self, query: bytes) -> bytes:
        pairs = []
        for pair in query.split(b"&"):
            name, equals, value = pair.partition(b"=")
            if (equals and ENCODED_OR_PLAIN_COMMA.search(value)
                    and unquote_plus(name.decode("latin-1")) in self.names):
                # Bytes throughout, so a value that is not UTF-8 reaches validation as it came.
                decoded = unquote_to_bytes(value.replace(b"+", b" "))
                pairs.extend(name + b"=" + quote_from_bytes(item, safe="").encode("ascii")
                             for item in decoded.split(b","))
            else:
                pairs.append(pair)
        return b"&".join(pairs)
