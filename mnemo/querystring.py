"""Accept both serialisations of an array query parameter.

Agno's client repeats the parameter (``topics=a&topics=b``); people and Agno's docs write it
comma-separated (``topics=a,b``). Splitting happens on the raw query string, before anything
is percent-decoded, so a comma that belongs to a value travels as ``%2C`` and stays in it.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Receive, Scope, Send


class CommaSeparatedArrays:
    """ASGI middleware: rewrite ``name=a,b`` as ``name=a&name=b`` for the given names."""

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
