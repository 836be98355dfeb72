"""Memory history and erasing a user.

Every create, update and delete records a version in the same transaction as the change; the
history outlives the memory. Erasing a user removes its memories, topics, history and summary.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from storage import MemoryExists

from .conftest import DB_ID, error_json, stored_memory


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def history(client, memory_id, **query):
    response = client.get(f"/memories/{memory_id}/history", params=query)
    assert response.status_code == 200, response.text
    return response.json()


# -- history ---------------------------------------------------------------------------------


def test_create_update_and_delete_each_record_a_version_oldest_first(client, create):
    created = create(memory="Likes tea", user_id="u1", topics=["drinks", "food"])
    memory_id = created["memory_id"]
    updated = client.patch(f"/memories/{memory_id}", json={"memory": "Likes coffee", "user_id": "u1",
                                                           "topics": ["drinks"]}).json()
    assert client.delete(f"/memories/{memory_id}").status_code == 204

    versions = history(client, memory_id)
    assert [(v["version"], v["event"], v["memory"], v["topics"]) for v in versions] == [
        (1, "create", "Likes tea", ["drinks", "food"]),
        (2, "update", "Likes coffee", ["drinks"]),
        (3, "delete", "Likes coffee", ["drinks"]),
    ]
    assert all((v["user_id"], v["agent_id"], v["team_id"]) == ("u1", None, None) for v in versions)
    assert versions[0]["changed_at"] == created["updated_at"]
    assert versions[1]["changed_at"] == updated["updated_at"]
    assert parse_time(versions[2]["changed_at"]) >= parse_time(versions[1]["changed_at"])


def test_history_stays_readable_after_the_memory_is_deleted(client, create):
    memory_id = create()["memory_id"]
    client.delete(f"/memories/{memory_id}")
    assert client.get(f"/memories/{memory_id}").status_code == 404
    assert history(client, memory_id)[-1]["event"] == "delete"


def test_the_history_of_an_id_that_never_existed_is_404(client):
    response = client.get("/memories/never-was/history")
    assert response.status_code == 404
    assert error_json(response) == {"detail": "Memory with ID never-was not found", "error_code": "NOT_FOUND"}


def test_bulk_delete_records_a_delete_only_for_the_memories_it_removed(client, create):
    mine, theirs = create(user_id="u1")["memory_id"], create(user_id="u2")["memory_id"]
    response = client.request("DELETE", "/memories", json={"memory_ids": [mine, theirs, "absent"],
                                                           "user_id": "u1"})
    assert response.status_code == 204
    assert [v["event"] for v in history(client, mine)] == ["create", "delete"]
    assert [v["event"] for v in history(client, theirs)] == ["create"]
    assert client.get("/memories/absent/history").status_code == 404


def test_an_update_that_finds_no_memory_of_that_user_records_nothing(client, create):
    memory_id = create(user_id="u1")["memory_id"]
    response = client.patch(f"/memories/{memory_id}", json={"memory": "changed", "user_id": "u2"})
    assert response.status_code == 404
    assert [v["event"] for v in history(client, memory_id)] == ["create"]


def test_with_user_id_only_that_users_versions_are_found(client, create):
    memory_id = create(user_id="u1")["memory_id"]
    assert len(history(client, memory_id, user_id="u1")) == 1
    assert client.get(f"/memories/{memory_id}/history", params={"user_id": "u2"}).status_code == 404


def test_an_imported_memory_starts_its_history_with_a_create_stamped_with_its_updated_at(repository):
    imported = stored_memory("imp-1", user_id="u1", memory="From elsewhere", topics=["a", "b"],
                             agent_id="agent", minutes=30, created_minutes=0)
    repository.insert_new([imported])
    [entry] = repository.history("imp-1")
    assert (entry.version, entry.event, entry.memory, entry.topics) == (1, "create", "From elsewhere",
                                                                        ["a", "b"])
    assert (entry.user_id, entry.agent_id, entry.changed_at) == ("u1", "agent", imported.updated_at)


def test_an_id_imported_again_after_its_delete_continues_its_history(repository):
    repository.insert([stored_memory("again", memory="first")])
    repository.delete(["again"])
    repository.insert([stored_memory("again", memory="second", minutes=5)])
    assert [(e.version, e.event, e.memory) for e in repository.history("again")] == [
        (1, "create", "first"), (2, "delete", "first"), (3, "create", "second")]


def test_a_refused_import_batch_records_no_history(repository):
    repository.insert([stored_memory("taken")])
    with pytest.raises(MemoryExists):
        repository.insert_new([stored_memory("new-one"), stored_memory("taken")])
    assert repository.history("new-one") == []
    assert len(repository.history("taken")) == 1


# -- erasing a user --------------------------------------------------------------------------


def test_erasing_a_user_removes_its_memories_topics_history_and_stats_and_counts_them(client, create):
    erased = [create(memory=f"m{i}", user_id="u1", topics=["t1", f"only-{i}"])["memory_id"]
              for i in range(3)]
    gone_before = create(user_id="u1")["memory_id"]
    client.delete(f"/memories/{gone_before}")
    kept = create(memory="other", user_id="u2", topics=["t1"])["memory_id"]

    response = client.delete("/users/u1/memories")
    assert response.status_code == 200
    assert response.json() == {"deleted": 3}

    assert client.get("/memories", params={"user_id": "u1"}).json()["meta"]["total_count"] == 0
    assert client.get("/memory_topics", params={"user_id": "u1"}).json() == []
    assert client.get("/memory_topics").json() == ["t1"]
    assert [s["user_id"] for s in client.get("/user_memory_stats").json()["data"]] == ["u2"]
    for memory_id in [*erased, gone_before]:
        assert client.get(f"/memories/{memory_id}/history").status_code == 404
    assert client.get(f"/memories/{kept}").json()["topics"] == ["t1"]
    assert [v["event"] for v in history(client, kept)] == ["create"]


def test_erasing_a_user_with_no_memories_deletes_nothing_and_is_not_an_error(client, create):
    create(user_id="u2")
    response = client.delete("/users/nobody/memories")
    assert response.status_code == 200
    assert response.json() == {"deleted": 0}
    assert client.get("/memories").json()["meta"]["total_count"] == 1


def test_memories_of_no_user_survive_erasing_a_user(client, repository):
    repository.insert([stored_memory("ownerless", user_id=None), stored_memory("owned", user_id="u1")])
    assert client.delete("/users/u1/memories").json() == {"deleted": 1}
    assert client.get("/memories/ownerless").status_code == 200
    assert len(history(client, "ownerless")) == 1


def test_erasing_a_user_answers_404_for_an_unknown_db_id_and_erases_nothing(client, create):
    create(user_id="u1")
    response = client.delete("/users/u1/memories", params={"db_id": "elsewhere"})
    assert response.status_code == 404
    assert client.get("/memories").json()["meta"]["total_count"] == 1


def test_a_memorys_history_and_a_users_erase_are_found_through_indexes(catalog, repository):
    history = repository.tables.history
    engine = catalog.databases[DB_ID].engine
    statements = [sa.select(history).where(history.c.memory_id == "m").order_by(history.c.version),
                  sa.select(history.c.id).where(history.c.user_id == "u")]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # A near-empty table is cheapest to scan; the question is whether an index can serve.
            conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        for statement in statements:
            sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            plan = " ".join(str(row[-1]) for row in conn.execute(sa.text(prefix + sql)))
            assert "INDEX" in plan.upper() and "SCAN " + history.name not in plan, plan
