"""`mnemo mcp`: the MCP tools over standard input and output, through the official MCP client,
on the database the environment names, as the administrator."""

from __future__ import annotations

import asyncio

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from .conftest import DB_ID, mnemo_command, server_env
from .test_mcp_processes import add_search_update_delete


@pytest.mark.slow
def test_mnemo_mcp_serves_the_tools_over_standard_input_and_output_as_the_administrator(
        database_url, table_name, tmp_path):
    command = mnemo_command()
    parameters = StdioServerParameters(
        command=command[0], args=[*command[1:], "mcp"], cwd=str(tmp_path),
        env=server_env(MNEMO_DATABASE_URL=database_url, MNEMO_DB_ID=DB_ID, MNEMO_TABLE=table_name))

    async def scenario():
        async with (stdio_client(parameters) as streams,
                    ClientSession(streams[0], streams[1]) as client):
            await client.initialize()
            await add_search_update_delete(client)

    asyncio.run(asyncio.wait_for(scenario(), 60))
