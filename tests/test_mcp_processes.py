"""The MCP tools as clients meet them outside this process: /mcp of a real `mnemo serve` with
one worker and with two, and Agno's own MCPTools as a third-party client of /mcp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from .tokens import bearer

KEY = "the administrator's key"


async def call(client, tool: str, **arguments):
    result = await client.call_tool(tool, arguments)
    return result.is_error, json.loads(result.content[0].text)


async def add_search_update_delete(client) -> None:
    assert len((await client.list_tools()).tools) == 7
    error, added = await call(client, "add_memory", memory="Plays chess on Sundays", user_id="ann",
                              topics=["hobbies"])
    assert not error, added
    error, found = await call(client, "search_memories", query="chess", user_id="ann")
    assert [m["memory_id"] for m in found["memories"]] == [added["memory_id"]]
    error, updated = await call(client, "update_memory", memory_id=added["memory_id"],
                                memory="Plays go on Sundays", user_id="ann")
    assert not error and updated["topics"] == []
    assert not (await call(client, "delete_memory", memory_id=added["memory_id"], user_id="ann"))[0]
    assert (await call(client, "search_memories", query="Sundays", user_id="ann"))[1]["total_count"] == 0
    error, bad = await call(client, "list_memories", page=0)
    assert error and bad["error_code"] == "VALIDATION_ERROR"


@contextlib.asynccontextmanager
async def http_session(url: str, token: str):
    async with (httpx2.AsyncClient(headers=bearer(token), timeout=20) as http,
                streamable_http_client(url, http_client=http) as streams,
                ClientSession(streams[0], streams[1]) as client):
        await client.initialize()
        yield client


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_mnemo_serve_answers_mcp_at_slash_mcp_with_any_number_of_workers(serve, workers):
    base = serve("--workers", workers, security_key=KEY)

    async def scenario():
        async with http_session(base + "/mcp", KEY) as client:
            await add_search_update_delete(client)
            # Stateless: every call may land on another worker, and each answers.
            for n in range(6):
                assert not (await call(client, "add_memory", memory=f"fact {n}", user_id="bo"))[0]
            assert (await call(client, "list_memories", user_id="bo"))[1]["total_count"] == 6

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.slow
def test_agnos_mcp_tools_list_and_call_mnemos_tools(serve):
    from agno.tools.mcp import MCPTools

    base = serve("--workers", "1", security_key=KEY)

    async def scenario():
        async with MCPTools(url=base + "/mcp", transport="streamable-http", headers=bearer(KEY)) as tools:
            assert {"add_memory", "search_memories", "list_topics"} <= set(tools.functions)
            added = await tools.functions["add_memory"].entrypoint(
                memory="Prefers short answers", user_id="agno-user", topics=["style"])
            assert "Prefers short answers" in str(added.content)
            found = await tools.functions["search_memories"].entrypoint(query="short", user_id="agno-user")
            assert json.loads(found.content)["total_count"] == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))
