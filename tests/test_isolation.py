"""Per-user isolation: a caller that is not an administrator never reads, changes or deletes
another user's memories, through any operation or parameter.

Hypothesis plays the attacker: many users each own memories (with shared words and topics, so
that filters could match across users); one of them, holding every user scope, sends sequences
of operations naming other users' memory ids and user ids in the path, the query and the body.
After every call, nothing the attacker sees belongs to anyone else, and everyone else's
memories are exactly as they were.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnemo.app import create_app
from mnemo.config import JwtConfig

from .conftest import make_settings, stored_memory
from .tokens import ADMIN, ALL_USER_SCOPES, bearer, rs256, rsa_keys

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
WORDS = ["coffee", "tea", "chess", "rust"]
TOPICS = ["food", "games", "work"]
MEMORIES_PER_USER = 4 + 1  # four created through the API, one shared with an agent and a team


@pytest.fixture
def world(catalog, table_name, repository):
    """An app trusting the test issuer's JWTs, and the memories every user owns."""
    app = create_app(make_settings(table_name, jwt=JwtConfig(rsa_keys().public_pem)), catalog=catalog)
    with app.test_client() as client:
        admin = bearer(rs256(sub="root", scopes=[ADMIN]))
        ids = {}
        for n, user in enumerate(USERS):
            ids[user] = []
            for i in range(MEMORIES_PER_USER - 1):
                body = {"memory": f"{user} likes {WORDS[(n + i) % len(WORDS)]}", "user_id": user,
                        "topics": [TOPICS[(n + i) % len(TOPICS)], f"{user}-only"]}
                created = client.post("/memories", json=body, headers=admin)
                assert created.status_code == 200, created.text
                ids[user].append(created.json()["memory_id"])
        # Memories an agent and a team share across users, and some with no user at all (as an
        # import can leave them): filters on agent_id or team_id must not cross users either.
        shared = [stored_memory(f"shared-{user}", user_id=user, memory=f"{user} likes coffee",
                                topics=["food"], agent_id="shared-agent", team_id="shared-team")
                  for user in USERS]
        orphans = [stored_memory(f"orphan-{n}", user_id=None, memory="nobody likes tea", topics=["food"],
                                 agent_id="shared-agent") for n in range(2)]
        repository.insert([*shared, *orphans])
        for user in USERS:
            ids[user].append(f"shared-{user}")
        ids[None] = [m.memory_id for m in orphans]
        tokens = {user: bearer(rs256(sub=user, scopes=ALL_USER_SCOPES)) for user in USERS}
        yield client, repository, ids, tokens


def snapshot(repository, *, except_user: str) -> dict:
    """Every memory not owned by ``except_user``, as stored, with its history."""
    memories, after = {}, None
    while page := repository.scan(after, 500):
        for memory in page:
            if memory.user_id != except_user:
                memories[memory.memory_id] = (memory, repository.history(memory.memory_id))
        after = page[-1].memory_id
    return memories


def own_topics(repository, user: str) -> list[str]:
    return repository.topics(user)


# -- what the attacker may try ---------------------------------------------------------------

user_ids = st.sampled_from([*USERS, "nobody"]) | st.none()
search = st.sampled_from([*WORDS, *USERS, "likes"]) | st.none()
topics = st.lists(st.sampled_from([*TOPICS, *(f"{u}-only" for u in USERS)]), max_size=2)


@st.composite
def calls(draw, ids):
    every_id = [i for owned in ids.values() for i in owned] + ["no-such-memory"]
    memory_id = st.sampled_from(every_id)
    kind = draw(st.sampled_from(["get", "list", "topics", "stats", "create", "update", "delete",
                                 "bulk_delete", "history", "erase"]))
    if kind == "get":
        return "GET", f"/memories/{draw(memory_id)}", _query(user_id=draw(user_ids)), None
    if kind == "history":
        return "GET", f"/memories/{draw(memory_id)}/history", _query(user_id=draw(user_ids)), None
    if kind == "erase":
        return "DELETE", f"/users/{draw(st.sampled_from([*USERS, 'nobody']))}/memories", {}, None
    if kind == "list":
        shared = st.sampled_from(["shared-agent", "shared-team"]) | st.none()
        return "GET", "/memories", _query(user_id=draw(user_ids), search_content=draw(search),
                                          topics=draw(topics) or None, agent_id=draw(shared),
                                          team_id=draw(shared), limit=draw(st.sampled_from([1, 20, 500])),
                                          sort_order=draw(st.sampled_from(["asc", "desc"]))), None
    if kind == "topics":
        return "GET", "/memory_topics", _query(user_id=draw(user_ids)), None
    if kind == "stats":
        return "GET", "/user_memory_stats", _query(user_id=draw(user_ids)), None
    if kind == "create":
        return "POST", "/memories", {}, {"memory": "planted", "user_id": draw(user_ids),
                                         "topics": draw(topics)}
    if kind == "update":
        return "PATCH", f"/memories/{draw(memory_id)}", {}, {"memory": "overwritten",
                                                             "user_id": draw(user_ids)}
    if kind == "delete":
        return "DELETE", f"/memories/{draw(memory_id)}", _query(user_id=draw(user_ids)), None
    return "DELETE", "/memories", {}, {"memory_ids": draw(st.lists(memory_id, min_size=1, max_size=6)),
                                       "user_id": draw(user_ids)}


def _query(**params) -> dict:
    return {name: value for name, value in params.items() if value is not None}


def check_answer(response, method, path, attacker, repository, ids):
    """Nothing in the answer is anyone else's; another's memory is, to the attacker, not there."""
    assert response.status_code < 500, response.text
    if path.startswith("/users/"):
        erased = path.split("/")[2]
        assert response.status_code == (200 if erased == attacker else 403), response.text
        return
    if response.status_code == 204 or response.status_code >= 400:
        if path.startswith("/memories/") and method in ("GET", "PATCH"):
            memory_id = path.split("/")[2]
            if memory_id not in ids[attacker]:
                assert response.status_code == 404, response.text
        return
    body = response.json()
    if path.endswith("/history"):
        assert body and all(version["user_id"] == attacker for version in body), body
    elif path == "/memory_topics":
        assert body == own_topics(repository, attacker)
    elif path == "/user_memory_stats":
        assert [entry["user_id"] for entry in body["data"]] in ([], [attacker])
    elif isinstance(body, dict) and "data" in body:
        assert all(memory["user_id"] == attacker for memory in body["data"]), body
    else:
        assert body["user_id"] == attacker, body


@given(data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_call_of_a_user_reaches_another_users_memories(world, data):
    client, repository, ids, tokens = world
    attacker = data.draw(st.sampled_from(USERS), label="attacker")
    others_before = snapshot(repository, except_user=attacker)
    for _ in range(data.draw(st.integers(1, 4), label="calls")):
        method, path, query, body = data.draw(calls(ids), label="call")
        response = client.request(method, path, params=query, json=body, headers=tokens[attacker])
        check_answer(response, method, path, attacker, repository, ids)
        assert snapshot(repository, except_user=attacker) == others_before


# -- the same, written out -------------------------------------------------------------------

def test_another_users_memory_cannot_be_read_even_naming_its_owner(world):
    client, _, ids, tokens = world
    for query in ({}, {"user_id": "alice"}, {"user_id": "bob"}):
        response = client.get(f"/memories/{ids['alice'][0]}", params=query, headers=tokens["bob"])
        assert response.status_code == 404
        assert response.json()["detail"] == f"Memory with ID {ids['alice'][0]} not found"


def test_another_users_memory_cannot_be_updated_and_stays_as_it_was(world):
    client, repository, ids, tokens = world
    before = repository.get(ids["alice"][0])
    for user_id in ("alice", "bob", None):
        response = client.patch(f"/memories/{ids['alice'][0]}", headers=tokens["bob"],
                                json={"memory": "hacked", "user_id": user_id, "topics": ["x"]})
        assert response.status_code == 404
    assert repository.get(ids["alice"][0]) == before


def test_another_users_memory_cannot_be_deleted_one_by_one_or_in_bulk(world):
    client, repository, ids, tokens = world
    for query in ({}, {"user_id": "alice"}):
        assert client.delete(f"/memories/{ids['alice'][0]}", params=query,
                             headers=tokens["bob"]).status_code == 204
    response = client.request("DELETE", "/memories", headers=tokens["bob"],
                              json={"memory_ids": [*ids["alice"], ids["bob"][0]], "user_id": "alice"})
    assert response.status_code == 204
    assert all(repository.get(memory_id) is not None for memory_id in ids["alice"])
    # Only the caller's own memory among the listed ids went.
    assert repository.get(ids["bob"][0]) is None


def test_another_users_history_is_not_there_even_naming_its_owner(world):
    client, _, ids, tokens = world
    for query in ({}, {"user_id": "alice"}):
        response = client.get(f"/memories/{ids['alice'][0]}/history", params=query, headers=tokens["bob"])
        assert response.status_code == 404
    own = client.get(f"/memories/{ids['bob'][0]}/history", params={"user_id": "alice"}, headers=tokens["bob"])
    assert [v["event"] for v in own.json()] == ["create"]


def test_a_user_may_erase_only_itself(world):
    client, repository, ids, tokens = world
    response = client.delete("/users/alice/memories", headers=tokens["bob"])
    assert response.status_code == 403
    assert response.json()["detail"] == "A token may erase only its own user's memories"
    assert all(repository.get(memory_id) is not None for memory_id in ids["alice"])
    response = client.delete("/users/bob/memories", headers=tokens["bob"])
    assert response.json() == {"deleted": MEMORIES_PER_USER}
    assert all(repository.get(memory_id) is None for memory_id in ids["bob"])
    assert all(repository.get(memory_id) is not None for memory_id in ids["alice"])


def test_an_administrator_erases_any_user(world):
    client, repository, ids, _ = world
    admin = bearer(rs256(sub="root", scopes=[ADMIN]))
    assert client.delete("/users/alice/memories", headers=admin).json() == {"deleted": MEMORIES_PER_USER}
    assert repository.user_stats(limit=100, page=1, user_id="alice").total_count == 0
    assert all(repository.get(memory_id) is not None for memory_id in ids["bob"])


def test_lists_topics_and_stats_only_show_the_callers_own_whatever_user_id_is_asked(world):
    client, repository, ids, tokens = world
    for user_id in (None, "alice", "bob"):
        query = _query(user_id=user_id)
        listed = client.get("/memories", params=query, headers=tokens["bob"]).json()
        assert sorted(m["memory_id"] for m in listed["data"]) == sorted(ids["bob"])
        assert listed["meta"]["total_count"] == MEMORIES_PER_USER
        topics = client.get("/memory_topics", params=query, headers=tokens["bob"]).json()
        assert topics == repository.topics("bob") and "alice-only" not in topics
        stats = client.get("/user_memory_stats", params=query, headers=tokens["bob"]).json()
        assert [(s["user_id"], s["total_memories"]) for s in stats["data"]] == [("bob", MEMORIES_PER_USER)]


def test_a_search_matching_everyones_memories_finds_only_the_callers(world):
    client, _, ids, tokens = world
    listed = client.get("/memories", params={"search_content": "likes", "limit": 100},
                        headers=tokens["carol"]).json()
    assert sorted(m["memory_id"] for m in listed["data"]) == sorted(ids["carol"])


def test_an_agent_or_team_filter_shared_by_everyone_still_finds_only_the_callers(world):
    client, _, ids, tokens = world
    for query in ({"agent_id": "shared-agent"}, {"team_id": "shared-team"},
                  {"agent_id": "shared-agent", "user_id": "alice"}):
        listed = client.get("/memories", params=query, headers=tokens["bob"]).json()
        assert [m["memory_id"] for m in listed["data"]] == ["shared-bob"], query
        assert listed["meta"]["total_count"] == 1


def test_a_create_is_stored_under_the_caller_whatever_the_body_says(world):
    client, _, _, tokens = world
    for user_id in ("alice", None, ""):
        created = client.post("/memories", headers=tokens["bob"],
                              json={"memory": "mine", "user_id": user_id})
        assert created.status_code == 200, created.text
        assert created.json()["user_id"] == "bob"
    alice = client.get("/memories", params={"search_content": "mine"}, headers=tokens["alice"]).json()
    assert alice["data"] == []


def test_a_user_updates_its_own_memory_without_naming_itself(world):
    client, _, ids, tokens = world
    response = client.patch(f"/memories/{ids['bob'][0]}", headers=tokens["bob"],
                            json={"memory": "changed", "user_id": "alice"})
    assert response.status_code == 200
    assert response.json()["user_id"] == "bob" and response.json()["memory"] == "changed"


def test_an_administrator_reads_changes_and_deletes_anyones_and_filters_freely(world):
    client, repository, ids, _ = world
    admin = bearer(rs256(sub="root", scopes=[ADMIN]))
    assert client.get(f"/memories/{ids['alice'][0]}", headers=admin).json()["user_id"] == "alice"
    listed = client.get("/memories", params={"user_id": "alice"}, headers=admin).json()
    assert {m["user_id"] for m in listed["data"]} == {"alice"}
    everyone = client.get("/memories", params={"limit": 100}, headers=admin).json()
    assert everyone["meta"]["total_count"] == len(USERS) * MEMORIES_PER_USER + len(ids[None])
    created = client.post("/memories", json={"memory": "for carol", "user_id": "carol"}, headers=admin)
    assert created.json()["user_id"] == "carol"
    assert client.patch(f"/memories/{ids['alice'][1]}", json={"memory": "edited", "user_id": "alice"},
                        headers=admin).status_code == 200
    assert client.delete(f"/memories/{ids['alice'][2]}", headers=admin).status_code == 204
    assert repository.get(ids["alice"][2]) is None
    stats = client.get("/user_memory_stats", params={"limit": 100}, headers=admin).json()
    assert {s["user_id"] for s in stats["data"]} == set(USERS)
