"""Behaviour of GET /memory_topics and GET /user_memory_stats."""

from __future__ import annotations

from .conftest import stored_memory


def test_topics_are_the_sorted_distinct_topics_of_all_memories(client, repository):
    repository.insert([
        stored_memory("m1", user_id="u1", topics=["work", "café", "Zebra"]),
        stored_memory("m2", user_id="u2", topics=["work", "日本", "apple"]),
    ])
    assert client.get("/memory_topics").json() == ["Zebra", "apple", "café", "work", "日本"]


def test_topics_for_one_user_are_only_that_users(client, repository):
    repository.insert([
        stored_memory("m1", user_id="u1", topics=["a", "shared"]),
        stored_memory("m2", user_id="u2", topics=["b", "shared"]),
    ])
    assert client.get("/memory_topics", params={"user_id": "u1"}).json() == ["a", "shared"]
    assert client.get("/memory_topics", params={"user_id": "nobody"}).json() == []


def test_topics_follow_updates(client, create):
    created = create(topics=["before"])
    client.patch(f"/memories/{created['memory_id']}",
                 json={"memory": "x", "user_id": "user-1", "topics": ["after"]})
    assert client.get("/memory_topics").json() == ["after"]


def test_stats_count_each_users_memories_most_recent_first(client, repository):
    repository.insert([
        stored_memory("a1", user_id="alice", minutes=1),
        stored_memory("a2", user_id="alice", minutes=5),
        stored_memory("b1", user_id="bob", minutes=9),
        stored_memory("c1", user_id="carol", minutes=3),
        stored_memory("anon", user_id=None, minutes=20),
    ])
    body = client.get("/user_memory_stats").json()
    assert body["data"] == [
        {"user_id": "bob", "total_memories": 1, "last_memory_updated_at": "2025-01-01T00:09:00Z"},
        {"user_id": "alice", "total_memories": 2, "last_memory_updated_at": "2025-01-01T00:05:00Z"},
        {"user_id": "carol", "total_memories": 1, "last_memory_updated_at": "2025-01-01T00:03:00Z"},
    ]
    assert (body["meta"]["total_count"], body["meta"]["total_pages"]) == (3, 1)


def test_stats_are_paginated_and_ties_break_by_user_id(client, repository):
    repository.insert([stored_memory(f"m{i}", user_id=f"user-{i}") for i in range(5)])
    first = client.get("/user_memory_stats", params={"limit": 2, "page": 1}).json()
    third = client.get("/user_memory_stats", params={"limit": 2, "page": 3}).json()
    assert [s["user_id"] for s in first["data"]] == ["user-0", "user-1"]
    assert [s["user_id"] for s in third["data"]] == ["user-4"]
    assert (third["meta"]["total_count"], third["meta"]["total_pages"]) == (5, 3)


def test_stats_for_one_user(client, repository):
    repository.insert([stored_memory("a", user_id="alice"), stored_memory("b", user_id="bob")])
    data = client.get("/user_memory_stats", params={"user_id": "alice"}).json()["data"]
    assert [s["user_id"] for s in data] == ["alice"]


def test_stats_follow_creates_updates_and_deletes(client, create):
    first = create(user_id="alice")
    second = create(user_id="alice")

    def alice():
        data = client.get("/user_memory_stats", params={"user_id": "alice"}).json()["data"]
        return data[0] if data else None

    assert alice()["total_memories"] == 2
    updated = client.patch(f"/memories/{first['memory_id']}",
                           json={"memory": "new", "user_id": "alice"}).json()
    assert alice()["last_memory_updated_at"] == updated["updated_at"]
    client.delete(f"/memories/{first['memory_id']}")
    assert alice() == {"user_id": "alice", "total_memories": 1,
                       "last_memory_updated_at": second["updated_at"]}
    client.delete(f"/memories/{second['memory_id']}")
    assert alice() is None
