"""Optimistic concurrency (ETag, If-Match) and safe retries (Idempotency-Key)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from mnemo.app import create_app
from storage import Database, MemoryQuery

from .conftest import DB_ID, error_json, make_settings

BODY = {"memory": "Likes tea", "user_id": "u1", "topics": ["drinks"]}


def etag_of(client, memory_id: str) -> str:
    response = client.get(f"/memories/{memory_id}")
    assert response.status_code == 200
    return response.headers["ETag"]


# -- ETag and If-Match --------------------------------------------------------------------------

def test_every_answer_carrying_a_memory_carries_its_version_as_a_strong_etag(client):
    created = client.post("/memories", json=BODY)
    tag = created.headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert etag_of(client, created.json()["memory_id"]) == tag
    updated = client.patch(f"/memories/{created.json()['memory_id']}",
                           json={**BODY, "memory": "Likes coffee"})
    assert updated.headers["ETag"] != tag
    assert etag_of(client, created.json()["memory_id"]) == updated.headers["ETag"]


def test_a_change_of_topics_alone_changes_the_etag(client, create):
    memory = create(topics=["a"])
    before = etag_of(client, memory["memory_id"])
    client.patch(f"/memories/{memory['memory_id']}",
                 json={"memory": memory["memory"], "user_id": "user-1", "topics": ["b"]})
    assert etag_of(client, memory["memory_id"]) != before


def test_a_patch_with_the_current_etag_in_if_match_updates(client, create):
    memory = create()
    tag = etag_of(client, memory["memory_id"])
    response = client.patch(f"/memories/{memory['memory_id']}", headers={"If-Match": tag},
                            json={"memory": "new", "user_id": "user-1"})
    assert response.status_code == 200
    assert response.json()["memory"] == "new"


def test_a_stale_if_match_is_412_and_changes_nothing(client, create):
    memory = create(topics=["t"])
    stale = etag_of(client, memory["memory_id"])
    client.patch(f"/memories/{memory['memory_id']}", json={"memory": "second", "user_id": "user-1"})
    now = client.get(f"/memories/{memory['memory_id']}")
    response = client.patch(f"/memories/{memory['memory_id']}", headers={"If-Match": stale},
                            json={"memory": "third", "user_id": "user-1", "topics": ["x"]})
    assert response.status_code == 412
    assert error_json(response)["error_code"] == "PRECONDITION_FAILED"
    after = client.get(f"/memories/{memory['memory_id']}")
    assert after.json() == now.json() and after.headers["ETag"] == now.headers["ETag"]
    deleted = client.delete(f"/memories/{memory['memory_id']}", headers={"If-Match": stale})
    assert deleted.status_code == 412
    assert client.get(f"/memories/{memory['memory_id']}").status_code == 200


@pytest.mark.parametrize("header", ['W/"{tag}"', "{tag}", '"nope"', '"", ""'])
def test_if_match_only_matches_a_strong_tag_that_is_current(client, create, header):
    memory = create()
    tag = etag_of(client, memory["memory_id"]).strip('"')
    response = client.delete(f"/memories/{memory['memory_id']}",
                             headers={"If-Match": header.format(tag=tag)})
    assert response.status_code == 412
    assert client.get(f"/memories/{memory['memory_id']}").status_code == 200


def test_if_match_may_list_several_tags_or_a_star(client, create):
    first, second = create(), create()
    tag = etag_of(client, first["memory_id"])
    assert client.delete(f"/memories/{first['memory_id']}",
                         headers={"If-Match": f'"old", {tag}'}).status_code == 204
    assert client.get(f"/memories/{first['memory_id']}").status_code == 404
    assert client.patch(f"/memories/{second['memory_id']}", headers={"If-Match": "*"},
                        json={"memory": "any", "user_id": "user-1"}).status_code == 200
    assert client.delete(f"/memories/{second['memory_id']}", headers={"If-Match": "*"}).status_code == 204


def test_a_conditional_delete_of_a_memory_that_does_not_exist_is_412(client):
    assert client.delete("/memories/missing", headers={"If-Match": "*"}).status_code == 412
    # Without If-Match it stays 204, as in Agno.
    assert client.delete("/memories/missing").status_code == 204


def test_a_conditional_patch_of_a_memory_that_does_not_exist_is_still_404(client):
    response = client.patch("/memories/missing", headers={"If-Match": '"abc"'},
                            json={"memory": "x", "user_id": "user-1"})
    assert response.status_code == 404


def test_of_racing_conditional_updates_from_one_version_exactly_one_wins(repository):
    memory = repository.create(memory="start", user_id="u", topics=["t"])
    version = memory.version
    outcomes: list[str] = []

    def write(i: int) -> None:
        try:
            repository.update(memory.memory_id, user_id="u", memory=f"v{i}", topics=[f"t{i}"],
                              if_version=lambda current: current == version)
            outcomes.append(f"v{i}")
        except Exception as error:  # noqa: BLE001 - the outcome is what is checked
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o.startswith("v")]
    assert len(winners) == 1 and outcomes.count("VersionMismatch") == 7
    stored = repository.get(memory.memory_id)
    assert (stored.memory, stored.topics) == (winners[0], [f"t{winners[0][1:]}"])


def test_browsers_on_configured_origins_may_send_if_match_and_idempotency_key_and_read_the_etag(
        catalog, table_name):
    app = create_app(make_settings(table_name, cors_origins=("https://app.example",)), catalog=catalog)
    origin = {"Origin": "https://app.example"}
    with app.test_client() as client:
        preflight = client.options("/memories/x", headers={
            **origin, "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "content-type,if-match,idempotency-key"})
        assert preflight.status_code == 200
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "if-match" in allowed and "idempotency-key" in allowed
        created = client.post("/memories", json=BODY, headers={**origin, "Idempotency-Key": "k"})
        exposed = created.headers["access-control-expose-headers"].lower()
        assert "etag" in exposed and "idempotent-replayed" in exposed


# -- Idempotency-Key ----------------------------------------------------------------------------

def test_the_same_idempotency_key_and_body_return_the_original_memory(client):
    first = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k-1"})
    again = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert (first.headers["Idempotent-Replayed"], again.headers["Idempotent-Replayed"]) == ("false", "true")
    assert client.get("/memories").json()["meta"]["total_count"] == 1


def test_a_replay_returns_the_memory_as_it_is_now(client):
    first = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"}).json()
    client.patch(f"/memories/{first['memory_id']}", json={**BODY, "memory": "changed"})
    again = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"})
    assert again.json()["memory_id"] == first["memory_id"]
    assert again.json()["memory"] == "changed"
    assert again.headers["ETag"] == etag_of(client, first["memory_id"])


def test_the_same_idempotency_key_with_a_different_body_is_409(client):
    client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"})
    for changed in ({**BODY, "memory": "Likes coffee"}, {**BODY, "topics": ["other"]}):
        response = client.post("/memories", json=changed, headers={"Idempotency-Key": "k"})
        assert response.status_code == 409
        assert error_json(response)["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert client.get("/memories").json()["meta"]["total_count"] == 1


def test_a_key_whose_memory_was_deleted_is_409_and_creates_nothing(client):
    first = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"}).json()
    client.delete(f"/memories/{first['memory_id']}")
    response = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"})
    assert response.status_code == 409
    assert error_json(response)["error_code"] == "IDEMPOTENT_MEMORY_DELETED"
    assert client.get("/memories").json()["meta"]["total_count"] == 0


def test_an_erase_forgets_the_users_idempotency_keys_so_nothing_confirms_what_was_stored(client):
    client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"})
    assert client.delete("/users/u1/memories").json() == {"deleted": 1}
    # Neither "deleted" for the same body nor "reused" for another: the key is simply new.
    other = client.post("/memories", json={**BODY, "memory": "Likes coffee"},
                        headers={"Idempotency-Key": "k"})
    assert other.status_code == 200 and other.headers["Idempotent-Replayed"] == "false"
    assert client.delete("/users/u1/memories").json() == {"deleted": 1}
    same = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"})
    assert same.status_code == 200 and same.headers["Idempotent-Replayed"] == "false"


def test_idempotency_keys_are_per_owner(client):
    mine = client.post("/memories", json=BODY, headers={"Idempotency-Key": "k"}).json()
    theirs = client.post("/memories", json={**BODY, "user_id": "u2"}, headers={"Idempotency-Key": "k"})
    assert theirs.status_code == 200
    assert theirs.json()["memory_id"] != mine["memory_id"]
    assert theirs.json()["user_id"] == "u2"


def test_without_an_idempotency_key_every_create_is_a_new_memory(client):
    ids = {client.post("/memories", json=BODY).json()["memory_id"] for _ in range(3)}
    assert len(ids) == 3
    assert "Idempotent-Replayed" not in client.post("/memories", json=BODY).headers


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there"])
def test_a_malformed_idempotency_key_is_422(client, key):
    response = client.post("/memories", json=BODY, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert client.get("/memories").json()["meta"]["total_count"] == 0


def test_racing_retries_with_one_key_create_one_memory(repository):
    results: list = []

    def create() -> None:
        results.append(repository.create_once("race", memory="m", user_id="u", topics=["t"]))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({memory.memory_id for memory, _ in results}) == 1
    assert sorted(replayed for _, replayed in results) == [False] + [True] * 7
    assert repository.list(MemoryQuery()).total_count == 1


@pytest.fixture
def short_lived_keys(database_url, table_name):
    """A repository whose idempotency keys last one second."""
    database = Database.connect(DB_ID, database_url, [table_name], idempotency_ttl=timedelta(seconds=1))
    database.prepare()
    yield database
    database.dispose()


def test_an_expired_key_creates_a_new_memory_and_expired_keys_are_purged(short_lived_keys, table_name,
                                                                        catalog, monkeypatch):
    # ``catalog`` drops the tables afterwards.
    import storage.writes as repository_module

    repository = short_lived_keys.repositories[table_name]
    first, _ = repository.create_once("k", memory="m", user_id="u")
    for i in range(5):
        repository.create_once(f"other-{i}", memory="m", user_id="u")
    later = repository_module.utcnow() + timedelta(seconds=2)
    monkeypatch.setattr(repository_module, "utcnow", lambda: later)
    second, replayed = repository.create_once("k", memory="different", user_id="u")
    assert not replayed and second.memory_id != first.memory_id
    keys = repository.tables.idempotency
    with short_lived_keys.engine.connect() as connection:
        remaining = connection.execute(keys.select()).all()
    assert [(row.idempotency_key, row.memory_id) for row in remaining] == [("k", second.memory_id)]


def test_the_idempotency_ttl_comes_from_the_settings(table_name, database_url):
    settings = make_settings(table_name, database_url, idempotency_ttl=timedelta(seconds=5))
    built = settings.catalog()
    try:
        assert built.repository().idempotency_ttl == timedelta(seconds=5)
    finally:
        built.dispose()
