"""The MCP server: the official SDK's low-level server, answering tools/list and tools/call.

The low-level server, not the SDK's MCPServer, because MCPServer builds each tool's schema from
a Python function's signature, and here every schema is the contract's.
"""

from __future__ import annotations

from collections.abc import Callable

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from .. import __version__
from .tools import Toolbox

INSTRUCTIONS = (
    "Mnemo keeps short facts about users across conversations. Search or list a user's "
    "memories before answering when what they said before matters; add a memory when they "
    "tell you something worth remembering; update one that has become wrong rather than "
    "adding a contradiction; delete one they ask you to forget."
)


def build_server(toolbox: Toolbox, caller_of: Callable[[ServerRequestContext], dict]) -> Server:
    """An MCP server of ``toolbox``'s tools; ``caller_of`` says who sent a request."""

    async def list_tools(_ctx: ServerRequestContext, _params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=toolbox.definitions())

    async def call_tool(ctx: ServerRequestContext,
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        return await toolbox.call(params.name, params.arguments, caller_of(ctx))

    return Server("mnemo", version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)
