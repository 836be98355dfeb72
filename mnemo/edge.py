"""ASGI middleware that shapes requests before Connexion routes them."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class RefuseControlCharactersInPath:
    """Answer 422 for a path with control characters in it.

    No identifier may contain one (the document says so), and such a path would not reach the
    right operation anyway: Starlette's mounts match paths with ``.*``, which stops at a
    newline, so Connexion would hand the request to Flask without validating it.
    """

    BODY = orjson.dumps({"detail": "path: control characters are not allowed in a URL path",
                         "error_code": "VALIDATION_ERROR"})

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and CONTROL_CHARACTERS.search(scope["path"]):
            await send({"type": "http.response.start", "status": 422,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(self.BODY)).encode())]})
            await send({"type": "http.response.body", "body": self.BODY})
            return
        await self.app(scope, receive, send)


class CommaSeparatedArrays:
    """Accept both serialisations of an array query parameter.

    Agno's client repeats the parameter (``topics=a&topics=b``); people and Agno's docs write
    it comma-separated (``topics=a,b``). Splitting happens on the raw query string, before
    anything is percent-decoded, so a comma that belongs to a value travels as ``%2C`` and
    stays in it.
    """

    def __init__(self, app: ASGIApp, names: frozenset[str]):
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"," in query:
            scope = {**scope, "query_string": self.split(query)}
        await self.app(scope, receive, send)

    def split(self, query: bytes) -> bytes:
        pairs = []
        for pair in query.split(b"&"):
            name, equals, value = pair.partition(b"=")
            if equals and b"," in value and unquote_plus(name.decode("latin-1")) in self.names:
                pairs.extend(name + b"=" + item for item in value.split(b","))
            else:
                pairs.append(pair)
        return b"&".join(pairs)


def array_query_parameters(document: dict) -> frozenset[str]:
    """Names of the query parameters the document declares as arrays (directly or nullable)."""
    components = document.get("components", {}).get("parameters", {})
    names = set()
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    parameter = components[parameter["$ref"].rsplit("/", 1)[-1]]
                schema = parameter.get("schema", {})
                branches = schema.get("anyOf", [schema])
                if parameter.get("in") == "query" and any(b.get("type") == "array" for b in branches):
                    names.add(parameter["name"])
    return frozenset(names)
