"""The tools at ``/mcp`` of the REST server: streamable HTTP, stateless, inside the app's stack.

``McpEndpoint`` is middleware placed innermost among the edge's (mnemo.app): a request to
``/mcp`` has by then been given its request id, counted, rate-limited and held to the body limit
like any other, and goes no further into Connexion, whose routing knows only the document's
paths. It checks the request's credential as the REST API would (401 or 403 in the contract's
error shape), then hands the request to the SDK's session manager.

Stateless: no session outlives its request, so any worker of any replica answers any call,
each checking the credential the call carries. The session manager's task group lives as long
as the app, entered from the app's lifespan (``McpService.running``), so it runs wherever the
app does: under uvicorn, and in each gunicorn worker.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from connexion.exceptions import ProblemException
from connexion.middleware.abstract import ROUTING_CONTEXT
from mcp.server import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..edge import send_error
from .access import Credentials
from .server import build_server
from .tools import Toolbox

PATHS = frozenset({"/mcp", "/mcp/"})
# Where the endpoint leaves the caller it found, in the request's scope, for the tools.
CALLER = "mnemo.mcp.caller"
# What the access log and the metrics call every MCP request (the tool is in the body).
OPERATION = "mcp"

# The SDK logs the end of every stateless request at INFO, a second line beside the access line.
for _name in ("mcp.server.streamable_http", "mcp.server.streamable_http_manager"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def caller_of(ctx: ServerRequestContext) -> dict:
    return ctx.request.scope[CALLER]


class McpService:
    """The MCP server of one app, and its session manager while the app runs."""

    def __init__(self, toolbox: Toolbox, credentials: Credentials):
        self.server = build_server(toolbox, caller_of)
        self.credentials = credentials
        self.manager: StreamableHTTPSessionManager | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # A manager runs once: each run of the app (a test client's, say) gets its own.
        manager = StreamableHTTPSessionManager(app=self.server, stateless=True, json_response=True)
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None


class McpEndpoint:
    """ASGI middleware answering ``/mcp`` with the MCP service; anything else passes on."""

    def __init__(self, app: ASGIApp, service: McpService):
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        # RequestId shares this dict with the middleware inside it, and names the answer by it.
        scope.setdefault("extensions", {})[ROUTING_CONTEXT] = {"operation_id": OPERATION}
        try:
            caller = self.service.credentials.caller(Headers(scope=scope).get("authorization"))
        except ProblemException as problem:
            challenge = ((b"www-authenticate", b"Bearer"),) if problem.status == 401 else ()
            await send_error(scope, send, problem.status, str(problem.detail), headers=challenge)
            return
        manager = self.service.manager
        if manager is None:
            await send_error(scope, send, 503, "The MCP endpoint is not running yet; retry shortly")
            return
        await manager.handle_request({**scope, CALLER: caller}, receive, send)
