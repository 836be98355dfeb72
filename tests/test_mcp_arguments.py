"""Whatever arguments a model sends a tool, the answer is the tool's result or a tool error in
the REST API's shape, never an internal error: Hypothesis sends each tool values of every JSON
type, within and beyond the contract's limits, under the names it takes and others.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnemo.contract import Contract
from mnemo.mcp.catalog import TOOLS
from mnemo.mcp.tools import Toolbox, ToolError

ADMIN = {"sub": None, "scopes": ("agent_os:admin",), "via": "test"}
USER = {"sub": "ann", "scopes": ("memories:read", "memories:write", "memories:delete"), "via": "test"}

texts = st.one_of(st.sampled_from(["", "ann", "coffee", "a\n", "x" * 256, "\x00", "é", "%_\\"]),
                  st.text(max_size=20))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.integers(), texts,
                    st.floats(allow_nan=True, allow_infinity=True), st.just(5.0))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(texts, inner, max_size=3)),
                      max_leaves=6)


@st.composite
def calls(draw):
    tool = draw(st.sampled_from(TOOLS))
    names = st.one_of(st.sampled_from(sorted(tool.arguments)), texts)
    return tool.name, draw(st.dictionaries(names, values, max_size=5))


@pytest.fixture
def toolbox(app):
    return Toolbox(Contract.load(), app.app)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=calls(), caller=st.sampled_from([ADMIN, USER]))
def test_no_tool_arguments_make_an_internal_error(toolbox, call, caller):
    name, arguments = call
    try:
        answer = toolbox.run(name, arguments, caller)
    except ToolError as error:
        assert error.body["error_code"] != "INTERNAL_SERVER_ERROR", (name, arguments, error.body)
        assert set(error.body) == {"detail", "error_code"}
    else:
        assert isinstance(answer, dict)
