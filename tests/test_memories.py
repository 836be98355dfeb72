"""Behaviour of the memory operations: create, get, update, delete, bulk delete."""

from __future__ import annotations

import uuid
from datetime import datetime

from .conftest import error_json


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- create -------------------------------------------------------------------------------


def test_create_assigns_a_new_uuid_and_returns_the_stored_memory(client, create):
    created = create(memory="Prefers code examples", user_id="user-456",
                     topics=["preferences", "technical"])
    assert uuid.UUID(created["memory_id"]).version == 4
    assert created["memory"] == "Prefers code examples"
    assert created["user_id"] == "user-456"
    assert created["topics"] == ["preferences", "technical"]
    assert created["created_at"] == created["updated_at"]
    assert parse_time(created["created_at"]).utcoffset().total_seconds() == 0
    assert client.get(f"/memories/{created['memory_id']}").json() == created


def test_create_gives_every_memory_its_own_id(create):
    assert create()["memory_id"] != create()["memory_id"]


def test_create_without_user_id_is_refused_with_agnos_message(client):
    for body in ({"memory": "x"}, {"memory": "x", "user_id": None}, {"memory": "x", "user_id": ""}):
        response = client.post("/memories", json=body)
        assert response.status_code == 400
        assert error_json(response) == {"detail": "User ID is required", "error_code": "BAD_REQUEST"}
    assert client.get("/memories").json()["meta"]["total_count"] == 0


def test_create_with_null_topics_stores_an_empty_list(create):
    assert create(topics=None)["topics"] == []


def test_a_topic_listed_twice_is_stored_once_in_first_order(create):
    assert create(topics=["b", "a", "b"])["topics"] == ["b", "a"]


def test_create_timestamps_have_sub_second_precision(create):
    stamps = {create()["created_at"] for _ in range(5)}
    assert len(stamps) == 5


# -- get ------------------------------------------------------------------------------------


def test_get_of_an_absent_memory_is_404_with_agnos_message(client):
    response = client.get("/memories/nope")
    assert response.status_code == 404
    assert error_json(response) == {"detail": "Memory with ID nope not found", "error_code": "NOT_FOUND"}


def test_get_with_user_id_finds_only_that_users_memory(client, create):
    memory_id = create(user_id="alice")["memory_id"]
    assert client.get(f"/memories/{memory_id}", params={"user_id": "alice"}).status_code == 200
    response = client.get(f"/memories/{memory_id}", params={"user_id": "bob"})
    assert response.status_code == 404
    assert response.json()["detail"] == f"Memory with ID {memory_id} not found"


# -- update ---------------------------------------------------------------------------------


def test_update_replaces_text_and_topics(client, create):
    created = create(memory="old", topics=["a", "b"])
    response = client.patch(f"/memories/{created['memory_id']}",
                            json={"memory": "new", "user_id": "user-1", "topics": ["c"]})
    assert response.status_code == 200
    updated = response.json()
    assert (updated["memory"], updated["topics"]) == ("new", ["c"])
    assert client.get(f"/memories/{created['memory_id']}").json() == updated


def test_update_advances_updated_at_and_keeps_created_at(client, create):
    created = create()
    updated = client.patch(f"/memories/{created['memory_id']}",
                           json={"memory": "again", "user_id": "user-1"}).json()
    assert updated["created_at"] == created["created_at"]
    assert parse_time(updated["updated_at"]) > parse_time(created["updated_at"])


def test_update_with_null_topics_clears_them(client, create):
    created = create(topics=["a"])
    updated = client.patch(f"/memories/{created['memory_id']}",
                           json={"memory": "x", "user_id": "user-1", "topics": None}).json()
    assert updated["topics"] == []


def test_update_of_an_absent_memory_is_404_and_creates_nothing(client):
    response = client.patch("/memories/ghost", json={"memory": "x", "user_id": "user-1"})
    assert response.status_code == 404
    assert response.json()["detail"] == "Memory with ID ghost not found"
    assert client.get("/memories/ghost").status_code == 404
    assert client.get("/memories").json()["meta"]["total_count"] == 0


def test_update_requires_user_id(client, create):
    memory_id = create()["memory_id"]
    for body in ({"memory": "x"}, {"memory": "x", "user_id": None}):
        response = client.patch(f"/memories/{memory_id}", json=body)
        assert response.status_code == 400
        assert response.json()["detail"] == "User ID is required"


def test_update_by_another_user_is_404_and_changes_nothing(client, create):
    created = create(user_id="alice", memory="mine")
    response = client.patch(f"/memories/{created['memory_id']}",
                            json={"memory": "stolen", "user_id": "mallory"})
    assert response.status_code == 404
    assert client.get(f"/memories/{created['memory_id']}").json() == created


# -- delete ---------------------------------------------------------------------------------


def test_delete_answers_204_and_the_memory_is_gone(client, create):
    memory_id = create()["memory_id"]
    response = client.delete(f"/memories/{memory_id}")
    assert (response.status_code, response.content) == (204, b"")
    assert client.get(f"/memories/{memory_id}").status_code == 404


def test_deleting_an_absent_memory_is_still_204(client):
    assert client.delete("/memories/never-was").status_code == 204


def test_delete_with_another_users_id_keeps_the_memory(client, create):
    memory_id = create(user_id="alice")["memory_id"]
    assert client.delete(f"/memories/{memory_id}", params={"user_id": "bob"}).status_code == 204
    assert client.get(f"/memories/{memory_id}").status_code == 200


def test_delete_removes_the_topics_with_the_memory(client, create):
    memory_id = create(topics=["only-here"])["memory_id"]
    client.delete(f"/memories/{memory_id}")
    assert client.get("/memory_topics").json() == []


def test_bulk_delete_removes_every_listed_memory_and_ignores_absent_ids(client, create):
    keep, first, second = (create()["memory_id"] for _ in range(3))
    response = client.request("DELETE", "/memories",
                              json={"memory_ids": [first, second, "never-was"]})
    assert response.status_code == 204
    remaining = [m["memory_id"] for m in client.get("/memories").json()["data"]]
    assert remaining == [keep]


def test_bulk_delete_needs_at_least_one_id(client):
    response = client.request("DELETE", "/memories", json={"memory_ids": []})
    assert response.status_code == 422
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert "memory_ids" in response.json()["detail"]


def test_bulk_delete_with_user_id_removes_only_that_users_memories(client, create):
    alice = create(user_id="alice")["memory_id"]
    bob = create(user_id="bob")["memory_id"]
    client.request("DELETE", "/memories", json={"memory_ids": [alice, bob], "user_id": "alice"})
    assert client.get(f"/memories/{alice}").status_code == 404
    assert client.get(f"/memories/{bob}").status_code == 200
