"""The tools: their names and descriptions, which operation of openapi.yaml each one is, and
which of that operation's parameters and body fields it takes, under which name.

Names and descriptions are written for a model choosing what to call; they are part of the
contract (tests/test_mcp_contract.py holds them). Everything about an argument's values (type,
limits, description) is the operation's, read from the document by mnemo.mcp.tools.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where an argument goes in the operation: its body, or one of its parameters (by name).
BODY = "body"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    operation_id: str
    description: str
    # tool argument -> (BODY or the parameter's location, the field's or parameter's name)
    arguments: dict[str, tuple[str, str]]
    # Arguments the tool needs beyond those its operation requires.
    required: tuple[str, ...] = ()
    read_only: bool = False
    destructive: bool = False
    # Ranks by meaning and words (search_mode=hybrid) where the server can, by substring where not.
    ranked: bool = False


USER_ID_NOTE = (
    " With a user's own token the tool always acts on that user's memories, whatever user_id "
    "says; with the administrator's key, user_id chooses the user."
)

TOOLS = (
    ToolSpec(
        name="add_memory",
        operation_id="create_memory",
        description=(
            "Remember one fact about the user for later conversations. Write it as a short, "
            "self-contained statement (\"Prefers answers with code examples\"), and file it "
            "under a few topics (\"preferences\", \"work\"). Returns the stored memory and its "
            "memory_id." + USER_ID_NOTE
        ),
        arguments={"memory": (BODY, "memory"), "topics": (BODY, "topics"),
                   "user_id": (BODY, "user_id")},
    ),
    ToolSpec(
        name="search_memories",
        operation_id="get_memories",
        description=(
            "Find the memories that answer a question, best first. The answer's \"search\" says "
            "how it searched: \"hybrid\" ranks memories by meaning and by shared words, so ask in "
            "plain words (\"what does the user drink in the morning?\"), and each memory carries "
            "its score (higher is better); \"substring\", where this server cannot search by "
            "meaning, finds only memories containing the query text (ignoring case): then search "
            "with a distinctive word or two (\"coffee\"). Narrow with topics (a memory must carry "
            "all of them)." + USER_ID_NOTE
        ),
        arguments={"query": ("query", "search_content"), "user_id": ("query", "user_id"),
                   "topics": ("query", "topics"), "limit": ("query", "limit")},
        required=("query",),
        read_only=True,
        ranked=True,
    ),
    ToolSpec(
        name="list_memories",
        operation_id="get_memories",
        description=(
            "List stored memories, a page at a time, most recently updated first unless "
            "sort_by and sort_order say otherwise; filter by topics (all must match), agent_id "
            "or team_id. The answer says the page, the number of pages and the total." + USER_ID_NOTE
        ),
        arguments={"user_id": ("query", "user_id"), "topics": ("query", "topics"),
                   "agent_id": ("query", "agent_id"), "team_id": ("query", "team_id"),
                   "limit": ("query", "limit"), "page": ("query", "page"),
                   "sort_by": ("query", "sort_by"), "sort_order": ("query", "sort_order")},
        read_only=True,
    ),
    ToolSpec(
        name="get_memory",
        operation_id="get_memory",
        description="Read one memory by its memory_id." + USER_ID_NOTE,
        arguments={"memory_id": ("path", "memory_id"), "user_id": ("query", "user_id")},
        read_only=True,
    ),
    ToolSpec(
        name="update_memory",
        operation_id="update_memory",
        description=(
            "Rewrite a memory that is no longer accurate: its text and its topics are replaced "
            "by the ones given (topics left out leave it with none). The memory keeps its "
            "memory_id and owner." + USER_ID_NOTE
        ),
        arguments={"memory_id": ("path", "memory_id"), "memory": (BODY, "memory"),
                   "topics": (BODY, "topics"), "user_id": (BODY, "user_id")},
        destructive=True,
    ),
    ToolSpec(
        name="delete_memory",
        operation_id="delete_memory",
        description=(
            "Forget one memory for good, by its memory_id. Deleting a memory that does not "
            "exist (or is not the caller's) changes nothing and is not an error." + USER_ID_NOTE
        ),
        arguments={"memory_id": ("path", "memory_id"), "user_id": ("query", "user_id")},
        destructive=True,
    ),
    ToolSpec(
        name="list_topics",
        operation_id="get_memory_topics",
        description=(
            "The distinct topics memories are filed under, sorted: reuse them when adding a "
            "memory, or to filter a search or a list." + USER_ID_NOTE
        ),
        arguments={"user_id": ("query", "user_id")},
        read_only=True,
    ),
)
