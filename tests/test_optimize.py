"""optimize-memories: a language model, reached over the OpenAI-compatible chat API, rewrites a
user's memories as one. A fake model server on loopback plays the model."""

from __future__ import annotations

import threading
import time

import pytest

from mnemo.app import create_app
from mnemo.config import ConfigError, JwtConfig, ModelConfig, Settings
from mnemo.optimizer import INSTRUCTIONS

from .conftest import error_json, make_settings, stored_memory
from .fake_openai import FakeOpenAI, Reply
from .tokens import ADMIN, ALL_USER_SCOPES, bearer, rs256, rsa_keys

SUMMARY = "User likes tea and coffee."


@pytest.fixture
def fake_model():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def model_client(catalog, table_name, fake_model):
    """A client of an app whose model is the fake, with a default model and a key."""

    def make(**model):
        settings = {"base_url": fake_model.base_url, "api_key": "sk-test", "model": "small-model",
                    "timeout_s": 5, **model}
        app = create_app(make_settings(table_name, model=ModelConfig(**settings),
                                       jwt=JwtConfig(rsa_keys().public_pem)), catalog=catalog)
        return app.test_client()

    return make


@pytest.fixture
def memories(repository):
    """u1's three memories (an agent shares two of them) and one of u2."""
    repository.insert([
        stored_memory("m1", user_id="u1", memory="User likes tea", topics=["drinks"], agent_id="a",
                      minutes=1),
        stored_memory("m2", user_id="u1", memory="User likes coffee in the morning",
                      topics=["drinks", "time"], agent_id="a", minutes=2),
        stored_memory("m3", user_id="u1", memory="User likes coffee", topics=["food"], minutes=3),
        stored_memory("other", user_id="u2", memory="Someone else entirely", minutes=4),
    ])
    return repository


def optimize(client, **body):
    return client.post("/optimize-memories", json={"user_id": "u1", **body},
                       headers=bearer(rs256(sub="root", scopes=[ADMIN])))


def test_a_preview_answers_the_summary_and_changes_nothing(model_client, memories, fake_model):
    response = optimize(model_client(), apply=False)
    assert response.status_code == 200, response.text
    body = response.json()
    [summary] = body["memories"]
    assert (summary["memory"], summary["user_id"], summary["topics"]) == (SUMMARY, "u1",
                                                                          ["drinks", "time", "food"])
    # The only agent among them, as in Agno; no team.
    assert (summary["agent_id"], summary["team_id"]) == ("a", None)
    assert (body["memories_before"], body["memories_after"]) == (3, 1)
    assert memories.get(summary["memory_id"]) is None
    assert {m.memory_id for m in memories.of_user("u1")} == {"m1", "m2", "m3"}
    assert all(len(memories.history(i)) == 1 for i in ("m1", "m2", "m3"))


def test_the_model_is_asked_once_with_every_memory_oldest_first_and_the_key(model_client, memories,
                                                                             fake_model):
    optimize(model_client(), apply=False)
    [request] = fake_model.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["json"]["model"] == "small-model"
    system, user = request["json"]["messages"]
    assert (system["role"], system["content"]) == ("system", INSTRUCTIONS)
    assert user["role"] == "user"
    texts = ["User likes tea", "User likes coffee in the morning", "User likes coffee"]
    positions = [user["content"].index(f"{n}. {text}\n" if n < 3 else f"{n}. {text}")
                 for n, text in enumerate(texts, start=1)]
    assert positions == sorted(positions)
    assert "Someone else" not in user["content"]


def test_applying_replaces_the_users_memories_with_the_summary_in_history_too(model_client, memories,
                                                                              fake_model):
    body = optimize(model_client(), apply=True).json()
    [summary] = body["memories"]
    [stored] = memories.of_user("u1")
    assert (stored.memory_id, stored.memory, stored.topics) == (summary["memory_id"], SUMMARY,
                                                                ["drinks", "time", "food"])
    for old in ("m1", "m2", "m3"):
        assert [e.event for e in memories.history(old)] == ["create", "delete"]
    assert [e.event for e in memories.history(stored.memory_id)] == ["create"]
    stats = {s.user_id: s.total_memories for s in memories.user_stats(limit=10, page=1).items}
    assert stats == {"u1": 1, "u2": 1}
    assert memories.get("other") is not None


def test_apply_is_the_default_as_in_agno(model_client, memories):
    assert optimize(model_client()).status_code == 200
    assert len(memories.of_user("u1")) == 1


def test_the_summary_keeps_an_agent_or_team_only_when_it_is_the_only_one(model_client, repository):
    repository.insert([stored_memory("s1", user_id="u1", agent_id="agent-7", team_id="team-1"),
                       stored_memory("s2", user_id="u1", agent_id="agent-8", team_id="team-1")])
    [summary] = optimize(model_client(), apply=False).json()["memories"]
    assert (summary["agent_id"], summary["team_id"]) == (None, "team-1")


def test_token_counts_are_agnos_estimate_of_four_characters_a_token(model_client, memories, fake_model):
    fake_model.reply = Reply(content="x" * 10)
    body = optimize(model_client(), apply=False).json()
    before = sum(len(text) // 4 for text in
                 ("User likes tea", "User likes coffee in the morning", "User likes coffee"))
    assert (body["tokens_before"], body["tokens_after"]) == (before, 2)
    assert body["tokens_saved"] == before - 2
    assert body["reduction_percentage"] == pytest.approx((before - 2) / before * 100)


def test_a_summary_longer_than_the_memories_saves_nothing_rather_than_a_negative(model_client, memories,
                                                                                 fake_model):
    fake_model.reply = Reply(content="y" * 400)
    body = optimize(model_client(), apply=False).json()
    assert body["tokens_after"] == 100
    assert (body["tokens_saved"], body["reduction_percentage"]) == (0, 0.0)


def test_the_requests_model_overrides_the_servers_default(model_client, memories, fake_model):
    assert optimize(model_client(), model="openai:gpt-4o-mini", apply=False).status_code == 200
    assert fake_model.requests[-1]["json"]["model"] == "gpt-4o-mini"
    assert optimize(model_client(model="openai:llama3"), apply=False).status_code == 200
    assert fake_model.requests[-1]["json"]["model"] == "llama3"


@pytest.mark.parametrize(("model", "says"), [
    ({"base_url": None}, "set MNEMO_OPENAI_BASE_URL (or OPENAI_BASE_URL)"),
    ({"model": None}, "or set MNEMO_OPTIMIZE_MODEL on the server"),
])
def test_without_a_model_configured_it_is_400_saying_what_to_set(model_client, memories, model, says):
    response = optimize(model_client(**model))
    assert response.status_code == 400
    body = error_json(response)
    assert body["error_code"] == "BAD_REQUEST" and says in body["detail"]
    assert len(memories.of_user("u1")) == 3


@pytest.mark.parametrize("name", ["anthropic:claude-3-5-sonnet", "gpt-4o", "openai:", ":x"])
def test_a_model_not_named_openai_colon_id_is_400(model_client, memories, fake_model, name):
    response = optimize(model_client(), model=name)
    assert response.status_code == 400
    assert "'openai:<model-id>'" in response.json()["detail"]
    assert fake_model.requests == []


def test_a_user_without_memories_is_404_and_the_model_is_not_asked(model_client, memories, fake_model):
    response = optimize(model_client(), user_id="nobody")
    assert response.status_code == 404
    assert error_json(response) == {"detail": "No memories found for user nobody", "error_code": "NOT_FOUND"}
    assert fake_model.requests == []


def test_an_empty_user_id_is_refused_with_agnos_message(model_client, memories):
    response = optimize(model_client(), user_id="")
    assert response.status_code == 400
    assert response.json()["detail"] == "User ID is required"


@pytest.mark.parametrize(("reply", "detail"), [
    (Reply(status=500), "The model server answered HTTP 500: The model `nope` does not exist"),
    (Reply(status=404), "The model server answered HTTP 404: The model `nope` does not exist"),
    (Reply(raw=b"<html>gateway</html>"), "The model server's answer is not a chat completion"),
    (Reply(raw=b'{"choices": []}'), "The model server's answer is not a chat completion"),
    (Reply(content=None), "The model answered with no text"),
    (Reply(content="   "), "The model answered with no text"),
    (Reply(content="z" * 5001), "The model's summary is 5001 characters long; a memory holds at most 5000"),
    (Reply(content="a\x00b"), "The model's summary contains NUL characters"),
])
def test_a_failing_model_is_502_and_nothing_changes(model_client, memories, fake_model, reply, detail):
    fake_model.reply = reply
    response = optimize(model_client(), apply=True)
    assert response.status_code == 502
    assert error_json(response) == {"detail": detail, "error_code": "BAD_GATEWAY"}
    assert {m.memory_id for m in memories.of_user("u1")} == {"m1", "m2", "m3"}
    assert all(len(memories.history(i)) == 1 for i in ("m1", "m2", "m3"))


def test_an_unreachable_model_server_is_502_and_nothing_changes(model_client, memories, fake_model):
    fake_model.stop()
    response = optimize(model_client(), apply=True)
    assert response.status_code == 502
    assert error_json(response) == {"detail": "The model server could not be reached",
                                    "error_code": "BAD_GATEWAY"}
    assert len(memories.of_user("u1")) == 3
    fake_model.start()


def test_a_model_slower_than_the_timeout_is_504_and_nothing_changes(model_client, memories, fake_model):
    fake_model.reply = Reply(delay_s=2)
    response = optimize(model_client(timeout_s=0.3), apply=True)
    assert response.status_code == 504
    assert error_json(response) == {"detail": "The model did not answer within 0.3 seconds",
                                    "error_code": "GATEWAY_TIMEOUT"}
    assert len(memories.of_user("u1")) == 3


def test_a_user_optimizes_only_its_own_memories_whatever_user_id_says(model_client, memories, fake_model):
    token = bearer(rs256(sub="u2", scopes=ALL_USER_SCOPES))
    response = model_client().post("/optimize-memories", json={"user_id": "u1"}, headers=token)
    assert response.status_code == 200, response.text
    assert response.json()["memories"][0]["user_id"] == "u2"
    assert "Someone else entirely" in fake_model.requests[-1]["json"]["messages"][1]["content"]
    assert "User likes tea" not in fake_model.requests[-1]["json"]["messages"][1]["content"]
    assert {m.memory_id for m in memories.of_user("u1")} == {"m1", "m2", "m3"}


def test_the_model_settings_come_from_the_environment():
    settings = Settings.from_env({"OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_API_KEY": "k",
                                  "MNEMO_OPTIMIZE_MODEL": "openai:llama3", "MNEMO_OPTIMIZE_TIMEOUT": "12.5"})
    assert settings.model == ModelConfig("http://localhost:11434/v1", "k", "openai:llama3", 12.5)
    preferred = Settings.from_env({"OPENAI_BASE_URL": "http://a/v1", "MNEMO_OPENAI_BASE_URL": "http://b/v1"})
    assert preferred.model.base_url == "http://b/v1"
    assert Settings.from_env({}).model == ModelConfig()
    assert "k" not in repr(settings.model.__repr__())


@pytest.mark.parametrize(("env", "message"), [
    ({"MNEMO_OPTIMIZE_TIMEOUT": "soon"}, "MNEMO_OPTIMIZE_TIMEOUT must be a number of seconds"),
    ({"MNEMO_OPTIMIZE_TIMEOUT": "0"}, "MNEMO_OPTIMIZE_TIMEOUT must be a number of seconds above 0"),
    ({"MNEMO_OPENAI_BASE_URL": "localhost:11434"}, "must start with http:// or https://"),
])
def test_an_unusable_model_setting_stops_the_server_with_a_message(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


# -- what changes while the model thinks is never lost ----------------------------------------

def optimize_while(model_client, fake_model, *writes):
    """Start an optimize of u1; once the model has the notes, make ``writes`` (each a function
    of a client of their own), then wait for the optimize's answer. The model takes two seconds;
    every client is built first, so that building one (a whole app) never eats into them."""
    fake_model.reply = Reply(delay_s=2.0)
    first, others = model_client(), [model_client() for _ in writes]
    answers = {}
    thread = threading.Thread(target=lambda: answers.setdefault("optimize", optimize(first)))
    thread.start()
    deadline = time.monotonic() + 10
    while not fake_model.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake_model.requests, "the model was never asked"
    results = [write(client) for write, client in zip(writes, others, strict=True)]
    thread.join(20)
    return answers["optimize"], results


def as_admin():
    return bearer(rs256(sub="root", scopes=[ADMIN]))


def test_an_optimize_never_brings_back_memories_erased_while_the_model_thinks(
        model_client, memories, fake_model, repository):
    answer, [erased] = optimize_while(
        model_client, fake_model, lambda c: c.delete("/users/u1/memories", headers=as_admin()))
    assert erased.json() == {"deleted": 3}
    assert answer.status_code == 409
    assert error_json(answer)["error_code"] == "MEMORIES_CHANGED"
    assert repository.of_user("u1") == []


def test_an_update_acknowledged_while_the_model_thinks_is_not_lost(
        model_client, memories, fake_model, repository):
    answer, [updated] = optimize_while(model_client, fake_model, lambda c: c.patch(
        "/memories/m2", json={"memory": "User gave up coffee", "user_id": "u1"}, headers=as_admin()))
    assert updated.status_code == 200
    assert answer.status_code == 409
    assert {m.memory_id: m.memory for m in repository.of_user("u1")}["m2"] == "User gave up coffee"
    assert len(repository.of_user("u1")) == 3


def test_of_two_optimizes_at_once_only_one_applies(model_client, memories, fake_model, repository):
    first, [second] = optimize_while(model_client, fake_model, lambda c: optimize(c))
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert [m.memory for m in repository.of_user("u1")] == [SUMMARY]


def test_memories_created_while_the_model_thinks_are_kept_beside_the_summary(
        model_client, memories, fake_model, repository):
    answer, [created] = optimize_while(model_client, fake_model, lambda c: c.post(
        "/memories", json={"memory": "User moved to Oslo", "user_id": "u1"}, headers=as_admin()))
    assert answer.status_code == 200 and created.status_code == 200
    assert sorted(m.memory for m in repository.of_user("u1")) == sorted([SUMMARY, "User moved to Oslo"])
