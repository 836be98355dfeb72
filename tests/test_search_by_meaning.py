"""Search by meaning: GET /memories with search_mode semantic or hybrid, on SQLite (sqlite-vec)
and on PostgreSQL with pgvector (a server the tests start), and what it answers where it cannot
run (embeddings off, PostgreSQL without pgvector, a table embedded by another model)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import sqlalchemy as sa

from mnemo.app import create_app
from mnemo.config import JwtConfig
from mnemo.embeddings import WordLlamaEmbedder
from storage import Catalog, Database
from storage.vectors import Filters

from .conftest import DB_ID, POSTGRES_URL, drop_tables, make_settings
from .pgvector_server import pgvector_server
from .tokens import ADMIN, ALL_USER_SCOPES, bearer, rs256, rsa_keys

BEN = [
    "Ben is vegetarian and avoids fish as well",
    "Ben works night shifts as a nurse at the city hospital",
    "Ben has two daughters, Ada and Lou",
    "Ben plays the cello in an amateur orchestra",
    "Ben's laptop runs Arch Linux with the i3 window manager",
]


@pytest.fixture(scope="module")
def pgvector_url():
    with pgvector_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql+pgvector"])
def meaning_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/memories.db"
    return request.getfixturevalue("pgvector_url")


@contextlib.contextmanager
def api(url: str, table: str, embedder=None, **settings):
    """A client of an app over ``table`` at ``url`` whose memories ``embedder`` embeds."""
    database = Database.connect(DB_ID, url, [table], embedder=embedder)
    database.prepare()
    catalog = Catalog([database])
    try:
        with create_app(make_settings(table, **settings), catalog=catalog).test_client() as client:
            yield client, catalog.repository()
    finally:
        catalog.dispose()


@pytest.fixture
def meaning(meaning_url, table_name):
    with api(meaning_url, table_name, WordLlamaEmbedder()) as opened:
        yield opened
    drop_tables(meaning_url, table_name)


def remember(client, texts, user_id="ben", **fields):
    ids = []
    for text in texts:
        response = client.post("/memories", json={"memory": text, "user_id": user_id, **fields})
        assert response.status_code == 200, response.text
        ids.append(response.json()["memory_id"])
    return ids


def ask(client, question, mode="semantic", **query):
    response = client.get("/memories", params={"search_content": question, "search_mode": mode, **query})
    assert response.status_code == 200, response.text
    return response.json()


def test_semantic_search_finds_the_memory_that_answers_a_question_sharing_none_of_its_words(meaning):
    client, _ = meaning
    remember(client, BEN)
    answer = ask(client, "can I suggest a salmon dish for dinner?", user_id="ben")
    assert answer["data"][0]["memory"] == BEN[0]
    scores = [item["score"] for item in answer["data"]]
    assert scores == sorted(scores, reverse=True)
    assert all(-1 <= score <= 1 for score in scores)
    assert answer["meta"]["total_count"] == len(BEN)


def test_hybrid_search_puts_first_the_memory_that_matches_in_meaning_and_in_words(meaning):
    client, _ = meaning
    remember(client, BEN)
    answer = ask(client, "which window manager does his laptop use?", "hybrid", user_id="ben")
    assert answer["data"][0]["memory"] == BEN[4]
    assert answer["data"][0]["score"] == 1.0
    assert all(0 < item["score"] <= 1 for item in answer["data"])


def test_substring_stays_the_default_and_carries_no_score(meaning):
    client, _ = meaning
    remember(client, BEN)
    response = client.get("/memories", params={"search_content": "salmon", "user_id": "ben"})
    assert response.json()["data"] == []
    found = client.get("/memories", params={"search_content": "CELLO"}).json()["data"]
    assert [item["memory"] for item in found] == [BEN[3]] and "score" not in found[0]


def test_ranked_search_applies_every_other_filter(meaning):
    client, _ = meaning
    remember(client, BEN)
    remember(client, ["Amy loves salmon sushi"], user_id="amy")
    remember(client, ["Ben's favourite fish is trout", "Ben fishes on Sundays"], topics=["hobby"])
    answer = ask(client, "salmon", user_id="ben")
    assert {item["user_id"] for item in answer["data"]} == {"ben"}
    hobby = ask(client, "salmon", "hybrid", user_id="ben", topics="hobby")
    assert {item["memory"] for item in hobby["data"]} == {"Ben's favourite fish is trout",
                                                          "Ben fishes on Sundays"}
    assert hobby["meta"]["total_count"] == 2


def test_a_users_token_ranks_only_that_users_memories(meaning_url, table_name):
    jwt = JwtConfig(rsa_keys().public_pem)
    with api(meaning_url, table_name, WordLlamaEmbedder(), jwt=jwt) as (client, _):
        admin = bearer(rs256(sub="root", scopes=[ADMIN]))
        for user, text in (("amy", "Amy loves salmon sushi"), ("ben", BEN[0]), ("ben", BEN[3])):
            assert client.post("/memories", json={"memory": text, "user_id": user}, headers=admin).is_success
        for mode in ("semantic", "hybrid"):
            response = client.get("/memories", params={"search_content": "salmon", "search_mode": mode,
                                                       "user_id": "amy"},
                                  headers=bearer(rs256(sub="ben", scopes=ALL_USER_SCOPES)))
            assert response.status_code == 200
            assert {item["user_id"] for item in response.json()["data"]} == {"ben"}
    drop_tables(meaning_url, table_name)


def test_ranked_pages_walk_one_list_without_repeats_or_gaps(meaning):
    client, _ = meaning
    remember(client, [f"Ben noted fact number {n} about his garden and tools" for n in range(23)])
    whole = ask(client, "gardening equipment", "hybrid", user_id="ben", limit=100)
    walked = []
    for page in range(1, 5):
        answer = ask(client, "gardening equipment", "hybrid", user_id="ben", limit=7, page=page)
        assert answer["meta"]["total_count"] == 23 and answer["meta"]["total_pages"] == 4
        walked += [item["memory_id"] for item in answer["data"]]
    assert walked == [item["memory_id"] for item in whole["data"]]
    assert len(set(walked)) == 23


def test_a_ranked_search_needs_a_question(meaning):
    client, _ = meaning
    response = client.get("/memories", params={"search_mode": "semantic"})
    assert response.status_code == 400
    assert response.json()["error_code"] == "SEARCH_QUESTION_REQUIRED"
    unknown = client.get("/memories", params={"search_mode": "nearest", "search_content": "x"})
    assert unknown.status_code == 422


def test_an_update_is_found_by_its_new_meaning(meaning):
    client, _ = meaning
    memory_id = remember(client, BEN)[3]
    response = client.patch(f"/memories/{memory_id}",
                            json={"memory": "Ben is allergic to peanuts and cashews", "user_id": "ben"})
    assert response.status_code == 200
    answer = ask(client, "are nuts safe for him to eat?", user_id="ben")
    assert answer["data"][0]["memory_id"] == memory_id


def vectors_of(repository, memory_ids) -> int:
    vectors = repository.tables.vectors
    with repository._engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(vectors)
                            .where(vectors.c.memory_id.in_(memory_ids))).scalar_one()


def test_deleting_or_erasing_takes_the_vectors_in_the_same_transaction(meaning):
    client, repository = meaning
    ids = remember(client, BEN)
    assert vectors_of(repository, ids) == len(BEN)
    assert client.delete(f"/memories/{ids[0]}").status_code == 204
    assert vectors_of(repository, ids[:1]) == 0
    assert client.delete("/users/ben/memories").status_code == 200
    assert vectors_of(repository, ids) == 0
    assert ask(client, "salmon")["data"] == []


def test_search_by_meaning_off_answers_400_and_substring_still_works(meaning_url, table_name):
    with api(meaning_url, table_name, embedder=None) as (client, _):
        remember(client, BEN)
        response = client.get("/memories", params={"search_content": "salmon", "search_mode": "hybrid"})
        assert response.status_code == 400
        assert response.json()["error_code"] == "EMBEDDINGS_OFF"
        assert len(client.get("/memories", params={"search_content": "ben"}).json()["data"]) == len(BEN)
    drop_tables(meaning_url, table_name)


@pytest.mark.postgres
def test_postgresql_without_pgvector_serves_substring_and_says_what_to_install(table_name):
    if not POSTGRES_URL:
        pytest.skip("MNEMO_TEST_POSTGRES_URL is not set")
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        offered = conn.execute(sa.text(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector')")).scalar()
    engine.dispose()
    assert not offered, "this test needs a PostgreSQL without pgvector, as CI's is"
    with api(POSTGRES_URL, table_name, WordLlamaEmbedder()) as (client, _):
        remember(client, BEN)
        response = client.get("/memories", params={"search_content": "salmon", "search_mode": "semantic"})
        assert response.status_code == 400
        body = response.json()
        assert body["error_code"] == "VECTOR_EXTENSION_MISSING" and "pgvector" in body["detail"]
        assert len(client.get("/memories", params={"search_content": "cello"}).json()["data"]) == 1
    drop_tables(POSTGRES_URL, table_name)


class OtherModel:
    """A different model of the same dimension: its vectors cannot be compared with wordllama's."""

    model = "test/other-model"
    dimension = WordLlamaEmbedder.dimension
    inline = True

    def embed(self, texts):
        return WordLlamaEmbedder().embed(texts)[:, ::-1].copy()


def test_a_table_embedded_by_another_model_refuses_search_by_meaning_until_reindexed(meaning_url, table_name):
    with api(meaning_url, table_name, WordLlamaEmbedder()) as (client, _):
        remember(client, BEN)
    with api(meaning_url, table_name, OtherModel()) as (client, repository):
        response = client.get("/memories", params={"search_content": "salmon", "search_mode": "semantic"})
        assert response.status_code == 400
        body = response.json()
        assert body["error_code"] == "EMBEDDING_MODEL_CHANGED" and "mnemo reindex" in body["detail"]
        assert repository.reindex(OtherModel.dimension) == len(BEN)
        answer = ask(client, "can I suggest a salmon dish?", user_id="ben")
        assert answer["meta"]["total_count"] == len(BEN)
    drop_tables(meaning_url, table_name)


class RemoteModel:
    """A remote model that is down until told otherwise."""

    model = WordLlamaEmbedder.model
    dimension = WordLlamaEmbedder.dimension
    inline = False
    up = False

    def embed(self, texts):
        if not self.up:
            raise ConnectionError("the embedding server is down")
        return WordLlamaEmbedder().embed(texts)


def test_a_remote_model_being_down_never_fails_a_write_and_its_backlog_is_embedded_later(
        meaning_url, table_name):
    model = RemoteModel()
    with api(meaning_url, table_name, model) as (client, repository):
        remember(client, BEN)
        assert repository.embedding_backlog() == len(BEN)
        response = client.get("/memories", params={"search_content": "salmon", "search_mode": "semantic"})
        assert response.status_code == 503
        assert response.json()["error_code"] == "EMBEDDING_MODEL_UNAVAILABLE"
        with pytest.raises(ConnectionError):
            repository.embed_backlog()
        model.up = True
        assert repository.embed_backlog() == len(BEN)
        assert repository.embedding_backlog() == 0
        assert ask(client, "can I suggest a salmon dish?")["data"][0]["memory"] == BEN[0]
    drop_tables(meaning_url, table_name)


def test_a_vector_made_from_text_since_replaced_is_not_stored(meaning_url, table_name):
    model = RemoteModel()
    model.up = True
    with api(meaning_url, table_name, model) as (client, repository):
        memory_id = remember(client, ["Ben drinks his coffee black"])[0]
        original = model.embed

        def embed_then_edit(texts):
            vectors = original(texts)
            client.patch(f"/memories/{memory_id}", json={"memory": "Ben quit coffee for green tea",
                                                         "user_id": "ben"})
            return vectors

        model.embed = embed_then_edit
        assert repository.embed_backlog() == 0
        assert vectors_of(repository, [memory_id]) == 0
        assert repository.embedding_backlog() == 1
        model.embed = original
        repository.embed_backlog()
        assert vectors_of(repository, [memory_id]) == 1
        found = ask(client, "what does he drink instead of coffee now?")["data"][0]
        assert found["memory"] == "Ben quit coffee for green tea"
    drop_tables(meaning_url, table_name)


def test_blank_and_long_questions_rank_without_error(meaning):
    client, _ = meaning
    remember(client, BEN)
    assert ask(client, " ", user_id="ben")["meta"]["total_count"] == len(BEN)
    assert ask(client, "cello " * 800, "hybrid", user_id="ben")["data"][0]["memory"] == BEN[3]
    assert np.isfinite([item["score"] for item in ask(client, "?!", "hybrid")["data"]]).all()


def test_the_search_memories_tool_searches_by_meaning_where_the_server_can(meaning_url, table_name):
    from mnemo.contract import Contract
    from mnemo.mcp.tools import Toolbox

    administrator = {"sub": None, "scopes": (ADMIN,), "via": "test"}
    for embedder, searched in ((WordLlamaEmbedder(), "hybrid"), (None, "substring")):
        with api(meaning_url, table_name, embedder) as (client, _):
            remember(client, BEN)
            tools = Toolbox(Contract.load(), client.app.app)
            found = tools.run("search_memories", {"query": "can I suggest a salmon dish?", "user_id": "ben"},
                              administrator)
            assert found["search"] == searched
            if embedder is not None:
                assert found["memories"][0]["memory"] == BEN[0] and "score" in found["memories"][0]
            else:
                assert found["memories"] == []
            client.delete("/users/ben/memories")
    drop_tables(meaning_url, table_name)


@pytest.mark.postgres
def test_mnemo_migrate_says_what_search_by_meaning_lacks_on_a_postgresql_without_pgvector(
        table_name, monkeypatch, capsys):
    from .command_line import run_mnemo

    if not POSTGRES_URL:
        pytest.skip("MNEMO_TEST_POSTGRES_URL is not set")
    monkeypatch.delenv("MNEMO_CONFIG", raising=False)
    monkeypatch.setenv("MNEMO_DATABASE_URL", POSTGRES_URL)
    monkeypatch.setenv("MNEMO_TABLE", table_name)
    try:
        assert run_mnemo(["migrate"]) == 0
        err = capsys.readouterr().err
        assert "search by meaning is unavailable" in err and "pgvector" in err
    finally:
        drop_tables(POSTGRES_URL, table_name)


def test_the_word_rank_leaves_out_function_words_and_words_common_to_the_family(meaning):
    client, repository = meaning
    routine = [f"Ben's weekly report number {n} went out on time" for n in range(12)]
    remember(client, [*BEN, "Does his calculations in Python", *routine])
    vectors = repository.vectors
    with vectors._engine.connect() as conn:
        def matched(question):
            return {item.memory_id for item in vectors.by_words(conn, question, Filters(user_id="ben"))}
        # "does" and "his" are all this question shares with the Python memory.
        assert matched("what does he do with his evenings?") == set()
        # "report" is held by 12 of the family's 18 memories; "cello" by one.
        assert matched("did the report mention the cello?") == {
            item["memory_id"] for item in ask(client, "cello", "substring")["data"]}
        assert len(matched("report")) == 0
        # Below the bound a shared word still counts, function word or not in other languages.
        assert len(matched("orchestra")) == 1
