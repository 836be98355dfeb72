"""The tools as MCP lists and calls them: schemas from the contract, calls through the handlers.

A call is checked against the tool's input schema with the validator the REST API uses
(mnemo.workarounds.openapi31.violation), so a bad argument is refused in the same words as a
bad parameter or body field, naming the argument. It then runs the operation's handler, found
by the names openapi.yaml gives, with the arguments Connexion would pass it (``body``, the
parameters, ``token_info``), inside a request context of the Flask app that serves the REST
API: the same repository, the same ``owner()`` rule, the same refusals. Whatever the handler
raises is shaped by mnemo.errors, as for REST, and comes back as a tool error.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import mcp_types as types
import orjson

from storage import CONNECTIONS_PER_PROCESS, SemanticSearchUnavailable

from .. import errors
from ..contract import Contract, Operation
from ..shapes import to_json
from ..workarounds.openapi31 import violation
from .access import missing_scope
from .catalog import BODY, TOOLS, ToolSpec

log = logging.getLogger("mnemo")

# How a ranked tool asks GET /memories to search, and what it falls back to where the server
# cannot search by meaning (embeddings off, no vector extension, a table awaiting reindex).
RANKED, UNRANKED = "hybrid", "substring"


class ToolError(Exception):
    """A call refused before it reached a handler: ``body`` is the REST API's error body."""

    def __init__(self, body: dict):
        super().__init__(body["detail"])
        self.body = body


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    operation: Operation
    input_schema: dict
    handler: Callable

    @property
    def definition(self) -> types.Tool:
        return types.Tool(
            name=self.spec.name, description=self.spec.description, input_schema=self.input_schema,
            annotations=types.ToolAnnotations(
                read_only_hint=self.spec.read_only, destructive_hint=self.spec.destructive,
                idempotent_hint=self.spec.read_only or self.spec.name == "delete_memory",
                open_world_hint=False))


def input_schema(contract: Contract, spec: ToolSpec) -> dict:
    """The JSON Schema of a tool's arguments: each one's schema as its operation declares it
    (every ``$ref`` inlined, for clients that cannot follow them), required when the operation
    requires it or the tool needs it."""
    operation = contract.operation(spec.operation_id)
    parameters = {(p.location, p.name): p for p in operation.parameters}
    body = body_schema(contract, operation)
    properties, required = {}, list(spec.required)
    for argument, (location, name) in spec.arguments.items():
        if location == BODY:
            properties[argument] = inlined(contract, body["properties"][name])
            needed = name in body.get("required", ())
        else:
            parameter = parameters[location, name]
            properties[argument] = inlined(contract, parameter.schema)
            needed = parameter.required
        if needed and argument not in required:
            required.append(argument)
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def body_schema(contract: Contract, operation: Operation) -> dict:
    body = contract.resolve(operation.definition.get("requestBody", {}))
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    return contract.resolve(schema)


def inlined(contract: Contract, node):
    if isinstance(node, dict):
        if "$ref" in node:
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return inlined(contract, {**contract.resolve({"$ref": node["$ref"]}), **siblings})
        return {key: inlined(contract, value) for key, value in node.items()}
    if isinstance(node, list):
        return [inlined(contract, item) for item in node]
    return node


def handler_of(operation: Operation) -> Callable:
    """The operation's handler, found as Connexion finds it: by the names the document gives."""
    return getattr(importlib.import_module(operation.module), operation.function)


def compact_memory(memory: dict) -> dict:
    """A memory as a model reads it: what it has, without the fields it does not."""
    return {key: value for key, value in memory.items() if value is not None}


def memories(page: dict) -> list[dict]:
    return [compact_memory(memory) for memory in page["data"]]


# Each tool's answer, from its handler's body and the arguments it was called with.
ANSWERS: dict[str, Callable[[object, dict], dict]] = {
    "add_memory": lambda body, _arguments: compact_memory(body),
    "search_memories": lambda body, _arguments: {
        "memories": memories(body), "total_count": body["meta"]["total_count"]},
    "list_memories": lambda body, _arguments: {
        "memories": memories(body), "page": body["meta"]["page"],
        "total_pages": body["meta"]["total_pages"], "total_count": body["meta"]["total_count"]},
    "get_memory": lambda body, _arguments: compact_memory(body),
    "update_memory": lambda body, _arguments: compact_memory(body),
    "delete_memory": lambda _body, arguments: {"memory_id": arguments["memory_id"], "deleted": True},
    "list_topics": lambda body, _arguments: {"topics": body},
}


class Toolbox:
    """The tools of one app: listed, and called on behalf of a caller."""

    def __init__(self, contract: Contract, flask_app, handlers: Executor | None = None):
        self.flask_app = flask_app
        self.tools = {spec.name: Tool(spec, contract.operation(spec.operation_id),
                                      input_schema(contract, spec),
                                      handler_of(contract.operation(spec.operation_id)))
                      for spec in TOOLS}
        self.error_shapes = errors.handlers(contract)
        # On the threads REST handlers run on (``handlers``; threads of its own without REST):
        # one per pooled database connection, so a tool call waits for a thread, never for a
        # connection it could time out on.
        self.handlers = handlers or ThreadPoolExecutor(max_workers=CONNECTIONS_PER_PROCESS,
                                                       thread_name_prefix="tool")

    def definitions(self) -> list[types.Tool]:
        return [tool.definition for tool in self.tools.values()]

    async def call(self, name: str, arguments: dict | None, caller: dict) -> types.CallToolResult:
        try:
            answer = await asyncio.get_running_loop().run_in_executor(
                self.handlers, functools.partial(self.run, name, arguments, caller))
        except ToolError as error:
            return result(error.body, is_error=True)
        return result(answer)

    def run(self, name: str, arguments: dict | None, caller: dict) -> dict:
        """The tool's answer; ToolError with the REST API's error body if it is refused."""
        tool = self.tools.get(name)
        if tool is None:
            raise ToolError(errors.error_body(404, f"No tool is named {name[:100]!r}"))
        arguments = {} if arguments is None else arguments
        problem = violation(tool.input_schema, arguments, "arguments")
        if problem:
            raise ToolError(errors.error_body(422, problem))
        refusal = missing_scope(caller, tool.operation.scopes)
        if refusal:
            raise ToolError(errors.error_body(403, refusal))
        try:
            # A request context of its own, as Connexion's bridge gives each REST call: the
            # handler finds the app's storage through it, and no header (If-Match,
            # Idempotency-Key) a tool does not offer.
            with self.flask_app.test_request_context():
                passed = handler_arguments(tool, arguments)
                if not tool.spec.ranked:
                    return ANSWERS[name](tool.handler(**passed, token_info=caller)[0], arguments)
                try:
                    searched, answer = RANKED, tool.handler(**passed, search_mode=RANKED, token_info=caller)
                except SemanticSearchUnavailable:
                    searched, answer = UNRANKED, tool.handler(**passed, token_info=caller)
        except Exception as error:  # every failure, shaped as REST shapes it
            raise ToolError(self.error_body(error)) from None
        return {"search": searched, **ANSWERS[name](answer[0], arguments)}

    def error_body(self, error: Exception) -> dict:
        for error_class, shape in self.error_shapes:
            if isinstance(error, error_class):
                response = shape(None, error)
                body = orjson.loads(response.body)
                return {"detail": body["detail"], "error_code": body["error_code"]}
        raise AssertionError("mnemo.errors shapes every exception")  # pragma: no cover


def handler_arguments(tool: Tool, arguments: dict) -> dict:
    """What Connexion would pass the handler: ``body`` and the parameters, by their names."""
    passed, body = {}, {}
    for argument, value in arguments.items():
        location, name = tool.spec.arguments[argument]
        if location == BODY:
            body[name] = value
        elif value is not None:  # a null parameter is one not sent
            passed[name] = whole(value)
    if tool.operation.definition.get("requestBody"):
        passed["body"] = body
    return passed


def whole(value):
    """A number JSON wrote as 5.0 as the integer the contract's schema accepted it as."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def result(answer: dict, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=to_json(answer).decode())],
                                is_error=is_error)
