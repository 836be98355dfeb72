"""Side by side with a real Agno AgentOS: every deliberate difference of docs/COMPATIBILITY.md.

Each test sends the same requests to Agno AgentOS (SQLite, started here) and to Mnemo, and
asserts both answers: Agno's defect as it is, and Mnemo's fix, or, for how a topics value is
split, that both answer alike. Should Agno change, the test fails and the table gets updated.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from .conftest import error_json, mnemo_command, server_env, start_server, stop_server

HERE = Path(__file__).resolve().parent
DB_ID = "compat"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(Agno AgentOS, Mnemo), each on its own SQLite file, both serving db_id 'compat'."""
    directory = tmp_path_factory.mktemp("compat")
    agno, agno_base = start_server(
        [sys.executable, str(HERE / "agno_os_server.py"), "{port}", f"{DB_ID}={directory}/agno.db"],
        server_env())
    mnemo, mnemo_base = start_server(
        [*mnemo_command(), "serve", "--port", "{port}"],
        server_env(MNEMO_DATABASE_URL=f"sqlite:///{directory}/mnemo.db", MNEMO_DB_ID=DB_ID,
                   MNEMO_TABLE="agno_memories"))
    yield agno_base, mnemo_base
    stop_server(agno)
    stop_server(mnemo)


class Both:
    """Send one request to both servers."""

    def __init__(self, agno_base: str, mnemo_base: str):
        self.bases = (agno_base, mnemo_base)

    def __call__(self, method: str, path: str, **kwargs) -> tuple[httpx.Response, httpx.Response]:
        agno, mnemo = (httpx.request(method, base + path, timeout=30, **kwargs) for base in self.bases)
        return agno, mnemo

    def create(self, user_id: str, memory: str = "text", topics=None) -> tuple[dict, dict]:
        agno, mnemo = self("POST", "/memories", json={"memory": memory, "user_id": user_id, "topics": topics})
        assert (agno.status_code, mnemo.status_code) == (200, 200), (agno.text, mnemo.text)
        return agno.json(), mnemo.json()


@pytest.fixture
def both(servers):
    return Both(*servers)


@pytest.fixture
def user():
    """A user of this test alone, so tests sharing the servers never see each other's data."""
    return f"user-{uuid.uuid4().hex[:8]}"


def memory_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["memory_id"] for m in response.json()["data"]]


# Memories by the text they hold, which is how answers of the two servers are compared (their
# ids differ). "a,b" is one topic with a comma in it.
TOPIC_SETS = {"a": ["a"], "ab": ["a", "b"], "abc": ["a", "b", "c"], "a,b": ["a,b"], "c": ["c"]}


@pytest.fixture
def topical(both, user):
    for text, topics in TOPIC_SETS.items():
        both.create(user, memory=text, topics=topics)
    return both


def texts(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(m["memory"] for m in response.json()["data"])


@pytest.mark.parametrize(("query", "found"), [
    ("topics=a%2Cb", ["ab", "abc"]),  # what httpx, requests and urllib send for topics=["a,b"]
    ("topics=a%2cb", ["ab", "abc"]),
    ("topics=a,b", ["ab", "abc"]),
    ("topics=a%2Cb,c", ["abc"]),
])
def test_one_topics_value_is_decoded_then_split_on_commas_as_agno_does(topical, user, query, found):
    agno, mnemo = topical("GET", f"/memories?user_id={user}&{query}")
    assert texts(agno) == texts(mnemo) == found


def test_a_topic_with_a_comma_cannot_be_a_filter_on_either(topical, user):
    agno, mnemo = topical("GET", "/memories", params={"user_id": user, "topics": ["a,b"]})
    assert "a,b" not in texts(agno)
    assert texts(agno) == texts(mnemo) == ["ab", "abc"]


@pytest.mark.parametrize(("query", "agno_found", "mnemo_found"), [
    ("topics=a&topics=b", ["a", "ab", "abc"], ["ab", "abc"]),  # what Agno's client sends for ["a", "b"]
    ("topics=a%2Cb&topics=c", ["ab", "abc"], ["abc"]),
    ("topics=c&topics=a,b", ["abc", "c"], ["abc"]),
])
def test_repeated_topics_all_count(topical, user, query, agno_found, mnemo_found):
    agno, mnemo = topical("GET", f"/memories?user_id={user}&{query}")
    assert texts(agno) == agno_found  # only the first topics value is read
    assert texts(mnemo) == mnemo_found


def test_a_unicode_topic_filter_matches(both, user):
    agno_made, mnemo_made = both.create(user, topics=["café"])
    agno, mnemo = both("GET", "/memories", params={"user_id": user, "topics": ["café"]})
    assert memory_ids(agno) == []  # JSON text holds "caf\u00e9"; LIKE '%"café"%' misses it
    assert memory_ids(mnemo) == [mnemo_made["memory_id"]]


def test_updating_an_absent_memory_is_404_not_a_create(both, user):
    memory_id = f"ghost-{uuid.uuid4().hex[:8]}"
    agno, mnemo = both("PATCH", f"/memories/{memory_id}", json={"memory": "x", "user_id": user})
    assert agno.status_code == 200 and agno.json()["memory_id"] == memory_id
    assert mnemo.status_code == 404
    assert both("GET", f"/memories/{memory_id}")[1].status_code == 404


def test_updating_another_users_memory_changes_nothing(both, user):
    agno_made, mnemo_made = both.create(user, memory="mine")
    agno = httpx.patch(f"{both.bases[0]}/memories/{agno_made['memory_id']}",
                       json={"memory": "overwritten", "user_id": "intruder"})
    mnemo = httpx.patch(f"{both.bases[1]}/memories/{mnemo_made['memory_id']}",
                        json={"memory": "overwritten", "user_id": "intruder"})
    assert agno.status_code == 200 and agno.json()["memory"] == "overwritten"
    assert mnemo.status_code == 404
    assert httpx.get(f"{both.bases[1]}/memories/{mnemo_made['memory_id']}").json()["memory"] == "mine"


@pytest.mark.parametrize(("needle", "lookalike"), [("a_b", "aXb"), ("100%", "1000")])
def test_search_wildcards_are_literal(both, user, needle, lookalike):
    both.create(user, memory=f"has {lookalike} only")
    agno, mnemo = both("GET", "/memories", params={"user_id": user, "search_content": needle})
    assert len(memory_ids(agno)) == 1  # '_' and '%' act as LIKE wildcards
    assert memory_ids(mnemo) == []


def test_search_is_case_insensitive_beyond_ascii(both, user):
    both.create(user, memory="Loves the café")
    agno, mnemo = both("GET", "/memories", params={"user_id": user, "search_content": "CAFÉ"})
    assert memory_ids(agno) == []  # SQLite's lower() folds ASCII only
    assert len(memory_ids(mnemo)) == 1


def test_searching_for_a_quote_finds_only_quotes(both, user):
    both.create(user, memory="no quotes here")
    agno, mnemo = both("GET", "/memories", params={"user_id": user, "search_content": '"'})
    assert len(memory_ids(agno)) == 1  # the JSON column stores the text inside quotes
    assert memory_ids(mnemo) == []


def test_total_count_stays_exact_past_the_last_page(both, user):
    both.create(user)
    agno, mnemo = both("GET", "/memories", params={"user_id": user, "page": 5})
    assert agno.json()["meta"]["total_count"] == 0
    assert mnemo.json()["meta"]["total_count"] == 1


def test_page_zero_is_a_validation_error_not_a_server_error(both):
    agno, mnemo = both("GET", "/memories", params={"page": 0})
    assert agno.status_code == 500
    assert (mnemo.status_code, mnemo.json()["error_code"]) == (422, "VALIDATION_ERROR")


def test_an_unknown_sort_field_is_refused(both):
    agno, mnemo = both("GET", "/memories", params={"sort_by": "no_such_column"})
    assert agno.status_code == 200  # silently unsorted
    assert mnemo.status_code == 422


def test_an_empty_user_id_is_refused(both):
    agno, mnemo = both("POST", "/memories", json={"memory": "x", "user_id": ""})
    assert agno.status_code == 200
    assert mnemo.status_code == 400 and mnemo.json()["detail"] == "User ID is required"


def test_table_must_name_a_memory_table(both):
    agno, mnemo = both("GET", "/memories", params={"db_id": DB_ID, "table": "agno_sessions"})
    assert agno.status_code == 200  # any table of the database selects its memory table
    assert mnemo.status_code == 404


def test_topics_come_back_sorted(both, user):
    both.create(user, topics=["zeta", "alpha", "Mid"])
    agno, mnemo = both("GET", "/memory_topics", params={"user_id": user})
    assert sorted(agno.json()) == sorted(["zeta", "alpha", "Mid"])  # in set order
    assert mnemo.json() == ["Mid", "alpha", "zeta"]


def test_a_topic_listed_twice_is_stored_once(both, user):
    agno_made, mnemo_made = both.create(user, topics=["x", "x"])
    assert agno_made["topics"] == ["x", "x"]
    assert mnemo_made["topics"] == ["x"]


def test_timestamps_have_microseconds_and_created_at_is_returned(both, user):
    agno_made, mnemo_made = both.create(user)
    assert "created_at" not in agno_made
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", agno_made["updated_at"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", mnemo_made["updated_at"])
    assert mnemo_made["created_at"] == mnemo_made["updated_at"]


def test_errors_carry_an_error_code_and_a_one_line_detail(both):
    agno, mnemo = both("POST", "/memories", json={"memory": ""})
    assert agno.status_code == mnemo.status_code == 422
    assert isinstance(agno.json()["detail"], list) and "error_code" not in agno.json()
    assert error_json(mnemo) == {"detail": "body.memory: '' should be non-empty",
                                 "error_code": "VALIDATION_ERROR"}


def test_with_several_databases_and_no_db_id_the_first_is_used(tmp_path):
    agno, agno_base = start_server([sys.executable, str(HERE / "agno_os_server.py"), "{port}",
                                    f"one={tmp_path}/one.db", f"two={tmp_path}/two.db"],
                                   server_env(), probe="/memories")
    config = tmp_path / "mnemo.toml"
    config.write_text(f'[[databases]]\nid = "one"\nurl = "sqlite:///{tmp_path}/m1.db"\n'
                      f'[[databases]]\nid = "two"\nurl = "sqlite:///{tmp_path}/m2.db"\n')
    mnemo, mnemo_base = start_server(
        [*mnemo_command(), "serve", "--port", "{port}", "--config", str(config)], server_env())
    try:
        agno_answer = httpx.get(f"{agno_base}/memories")
        mnemo_answer = httpx.get(f"{mnemo_base}/memories")
    finally:
        stop_server(agno)
        stop_server(mnemo)
    assert agno_answer.status_code == 400
    assert mnemo_answer.status_code == 200
