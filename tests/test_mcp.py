"""Mnemo's MCP tools, through the official MCP client over streamable HTTP at /mcp, served by
uvicorn on loopback in this process: the tools list and work, a user's token reaches only
that user's memories, each tool needs its operation's scope, and a bad argument is a tool error
in the REST API's words that leaves the connection working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import httpx
import httpx2
import pytest
import uvicorn
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mnemo.app import create_app
from mnemo.config import JwtConfig

from .conftest import free_port, make_settings
from .tokens import ADMIN, READ, WRITE, bearer, rs256, rsa_keys

KEY = "the administrator's key"


@pytest.fixture
def mcp_url(catalog, table_name):
    """The /mcp of an app with a security key and trusted JWTs, served by uvicorn on loopback."""
    app = create_app(make_settings(table_name, security_key=KEY, jwt=JwtConfig(rsa_keys().public_pem)),
                     catalog=catalog)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(10)


@contextlib.asynccontextmanager
async def session(url: str, token: str):
    async with (httpx2.AsyncClient(headers=bearer(token), timeout=10) as http,
                streamable_http_client(url, http_client=http) as streams,
                ClientSession(streams[0], streams[1]) as client):
        await client.initialize()
        yield client


async def call(client: ClientSession, tool: str, **arguments) -> tuple[bool, dict | list]:
    """(whether the call was a tool error, its JSON answer)."""
    result = await client.call_tool(tool, arguments)
    return result.is_error, json.loads(result.content[0].text)


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_tools_are_listed_with_their_descriptions_and_input_schemas(mcp_url):
    async def scenario():
        async with session(mcp_url, KEY) as client:
            return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in run(scenario())}
    assert set(tools) == {"add_memory", "search_memories", "list_memories", "get_memory",
                          "update_memory", "delete_memory", "list_topics"}
    assert tools["add_memory"].input_schema["required"] == ["memory"]
    assert tools["search_memories"].input_schema["required"] == ["query"]
    assert tools["delete_memory"].annotations.destructive_hint
    assert all(tool.description for tool in tools.values())


def test_a_memory_is_added_searched_updated_and_deleted_through_the_tools(mcp_url):
    async def scenario():
        async with session(mcp_url, KEY) as client:
            error, added = await call(client, "add_memory", memory="Likes dark roast coffee",
                                      topics=["food"], user_id="ann")
            assert not error, added
            assert set(added) == {"memory_id", "memory", "topics", "user_id", "created_at", "updated_at"}
            error, found = await call(client, "search_memories", query="COFFEE", user_id="ann")
            assert not error and found["search"] == "substring" and found["total_count"] == 1
            assert found["memories"][0]["memory_id"] == added["memory_id"]
            error, updated = await call(client, "update_memory", memory_id=added["memory_id"],
                                        memory="Likes green tea", topics=["drinks"], user_id="ann")
            assert not error and updated["memory"] == "Likes green tea"
            error, topics = await call(client, "list_topics", user_id="ann")
            assert (error, topics) == (False, {"topics": ["drinks"]})
            error, listed = await call(client, "list_memories", user_id="ann", limit=1)
            assert not error and (listed["page"], listed["total_pages"], listed["total_count"]) == (1, 1, 1)
            error, deleted = await call(client, "delete_memory", memory_id=added["memory_id"], user_id="ann")
            assert (error, deleted) == (False, {"memory_id": added["memory_id"], "deleted": True})
            error, gone = await call(client, "get_memory", memory_id=added["memory_id"])
            assert error and gone == {"detail": f"Memory with ID {added['memory_id']} not found",
                                      "error_code": "NOT_FOUND"}

    run(scenario())


def test_a_users_token_reaches_only_its_own_memories_whatever_user_id_it_names(mcp_url):
    alice, bob = rs256(sub="alice"), rs256(sub="bob")

    async def scenario():
        async with session(mcp_url, alice) as client:
            error, mine = await call(client, "add_memory", memory="alice's secret", user_id="bob")
            assert not error and mine["user_id"] == "alice"
        async with session(mcp_url, bob) as client:
            await call(client, "add_memory", memory="bob's secret")
            error, found = await call(client, "search_memories", query="secret", user_id="alice")
            assert [m["user_id"] for m in found["memories"]] == ["bob"]
            error, listed = await call(client, "list_memories", user_id="alice")
            assert [m["user_id"] for m in listed["memories"]] == ["bob"]
            assert (await call(client, "get_memory", memory_id=mine["memory_id"], user_id="alice"))[0]
            error, _ = await call(client, "update_memory", memory_id=mine["memory_id"], memory="taken",
                                  user_id="alice")
            assert error
            await call(client, "delete_memory", memory_id=mine["memory_id"], user_id="alice")
            assert (await call(client, "list_topics", user_id="alice"))[1] == {"topics": []}
        async with session(mcp_url, alice) as client:
            error, still = await call(client, "get_memory", memory_id=mine["memory_id"])
            assert not error and still["memory"] == "alice's secret"

    run(scenario())


def test_a_tool_needs_the_scope_its_operation_names(mcp_url):
    reader = rs256(sub="rita", scopes=[READ])

    async def scenario():
        async with session(mcp_url, reader) as client:
            assert (await call(client, "add_memory", memory="x")) == (
                True, {"detail": "This token lacks the scope memories:write", "error_code": "FORBIDDEN"})
            assert (await call(client, "delete_memory", memory_id="m")) == (
                True, {"detail": "This token lacks the scope memories:delete", "error_code": "FORBIDDEN"})
            assert (await call(client, "list_topics")) == (False, {"topics": []})
        async with session(mcp_url, rs256(sub="root", scopes=[ADMIN])) as client:
            assert not (await call(client, "add_memory", memory="x", user_id="u"))[0]

    run(scenario())


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc", "Bearer " + "x" * 9000])
def test_a_request_without_a_valid_credential_is_401_before_any_tool(mcp_url, authorization):
    headers = {"Accept": "application/json, text/event-stream"}
    if authorization:
        headers["Authorization"] = authorization
    answer = httpx.post(mcp_url, headers=headers,
                        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json()["error_code"] == "UNAUTHENTICATED"


def test_a_jwt_without_a_user_that_is_not_an_administrators_is_403(mcp_url):
    answer = httpx.post(mcp_url, headers=bearer(rs256(sub=None, scopes=[WRITE])),
                        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 403
    assert answer.json()["detail"] == "The token names no user (sub claim)"


def test_a_bad_argument_is_a_tool_error_naming_it_in_the_rest_apis_words(mcp_url, catalog, table_name):
    rest = create_app(make_settings(table_name), catalog=catalog)
    with rest.test_client() as client:
        rest_limit = client.get("/memories", params={"limit": 0}).json()["detail"]
        rest_memory = client.post("/memories", json={"memory": "", "user_id": "u"}).json()["detail"]

    async def scenario():
        async with session(mcp_url, KEY) as client:
            error, limit = await call(client, "list_memories", limit=0)
            assert error and limit == {"detail": "arguments.limit: 0 is less than the minimum of 1",
                                       "error_code": "VALIDATION_ERROR"}
            assert rest_limit.endswith(": 0 is less than the minimum of 1")
            error, memory = await call(client, "add_memory", memory="", user_id="u")
            assert error and memory["detail"] == rest_memory.replace("body.", "arguments.", 1)
            error, missing = await call(client, "add_memory", topics=["t"])
            assert missing["detail"] == "arguments: 'memory' is a required property"
            error, unknown = await call(client, "list_topics", db_id="other")
            assert "'db_id' was unexpected" in unknown["detail"]
            error, topic = await call(client, "add_memory", memory="m", topics=["a\n"], user_id="u")
            assert error and topic["detail"].startswith("arguments.topics.0: ")
            error, nameless = await call(client, "add_memory", memory="m")
            assert error and nameless == {"detail": "User ID is required", "error_code": "BAD_REQUEST"}
            error, unnamed = await call(client, "no_such_tool")
            assert error and unnamed["error_code"] == "NOT_FOUND"
            # The connection is as good as before.
            assert not (await call(client, "list_topics"))[0]

    run(scenario())


def test_mcp_requests_are_counted_and_logged_as_the_mcp_operation(mcp_url, caplog):
    with caplog.at_level("INFO", logger="mnemo.access"):
        httpx.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    lines = [record.getMessage() for record in caplog.records if record.name == "mnemo.access"]
    assert any(" /mcp 401 " in line and "operation=mcp" in line for line in lines), lines
