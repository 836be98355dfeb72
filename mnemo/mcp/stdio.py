"""The tools over standard input and output, for an assistant that starts ``mnemo mcp`` itself."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from .server import build_server
from .tools import Toolbox


async def serve(toolbox: Toolbox, caller: dict) -> None:
    """Answer MCP on standard input and output as ``caller`` until the client closes them."""
    server = build_server(toolbox, lambda _ctx: caller)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
