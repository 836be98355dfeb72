"""The MCP tools and the contract agree: each tool is one operation of openapi.yaml, takes that
operation's own parameters and body fields with their schemas, and needs its scopes.

The tools' names are part of the contract too: an assistant's prompts and configurations name
them, so renaming one is a change clients see.
"""

from __future__ import annotations

import pytest

from mnemo.contract import Contract
from mnemo.mcp.catalog import BODY, TOOLS
from mnemo.mcp.tools import body_schema, inlined, input_schema

NAMES = ["add_memory", "search_memories", "list_memories", "get_memory", "update_memory",
         "delete_memory", "list_topics"]


@pytest.fixture(scope="module")
def contract():
    return Contract.load()


def test_the_tools_are_the_ones_clients_know_by_name():
    assert [tool.name for tool in TOOLS] == NAMES


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_every_argument_of_a_tool_is_its_operations_parameter_or_body_field_with_its_schema(contract, tool):
    operation = contract.operation(tool.operation_id)
    parameters = {(p.location, p.name): p for p in operation.parameters}
    body = body_schema(contract, operation)
    schema = input_schema(contract, tool)
    assert set(schema["properties"]) == set(tool.arguments)
    for argument, (location, name) in tool.arguments.items():
        declared = body["properties"][name] if location == BODY else parameters[location, name].schema
        assert schema["properties"][argument] == inlined(contract, declared), argument


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_a_tool_requires_everything_its_operation_requires(contract, tool):
    operation = contract.operation(tool.operation_id)
    body = body_schema(contract, operation)
    required = set(input_schema(contract, tool)["required"])
    for argument, (location, name) in tool.arguments.items():
        if location == BODY and name in body.get("required", ()):
            assert argument in required
    for parameter in operation.parameters:
        if parameter.required and parameter.location in ("path", "query"):
            assert (parameter.location, parameter.name) in tool.arguments.values(), parameter.name


def test_no_tool_schema_leaves_a_reference_a_client_cannot_follow(contract):
    for tool in TOOLS:
        assert "$ref" not in repr(input_schema(contract, tool)), tool.name


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_a_tool_is_read_only_exactly_when_its_operation_needs_only_the_read_scope(contract, tool):
    scopes = contract.operation(tool.operation_id).scopes
    assert scopes, "every tool's operation is protected"
    assert tool.read_only == (scopes == {"memories:read"})


def test_search_memories_asks_for_the_ranked_mode_the_contract_offers(contract):
    from mnemo.mcp.tools import RANKED, UNRANKED

    mode = next(parameter for parameter in contract.operation("get_memories").parameters
                if parameter.name == "search_mode")
    assert {RANKED, UNRANKED} <= set(mode.schema["enum"]) and mode.schema["default"] == UNRANKED
