"""The embedding worker embeds queued memories in the background, rides out the model's and the
databases' outages with one warning each, and shows its backlog in /metrics and /ready;
`mnemo reindex` re-embeds a table whose recorded model is no longer the server's. The remote
model is tests/fake_openai.py's OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest
from prometheus_client import REGISTRY

from mnemo import embedding_worker
from mnemo.app import create_app
from mnemo.embedding_worker import EmbeddingWorker
from mnemo.embeddings import OpenAIEmbedder
from storage import Catalog, Database

from .command_line import run_mnemo
from .conftest import DB_ID, drop_tables, make_settings, stored_memory
from .fake_openai import EmbeddingReply, FakeOpenAI
from .test_metrics import scrape, value

# The worker's timings in these tests: it polls every 50 ms and retries at most every 200 ms.
POLL_S = 0.05
MAX_BACKOFF_S = 0.2
DEADLINE_S = 10




@pytest.fixture
def quick(monkeypatch):
    """The app's worker, at the test's timings."""
    monkeypatch.setattr(embedding_worker, "POLL_S", POLL_S)
    monkeypatch.setattr(embedding_worker, "MAX_BACKOFF_S", MAX_BACKOFF_S)


@pytest.fixture
def sqlite_url(tmp_path):
    # Search by meaning runs on SQLite through sqlite-vec; the test PostgreSQL has no pgvector.
    return f"sqlite:///{tmp_path}/memories.db"


def remote(fake: FakeOpenAI, model_id: str = "fake-embed") -> OpenAIEmbedder:
    return OpenAIEmbedder(fake.base_url, model_id)


@contextlib.contextmanager
def opened(url: str, table: str, embedder) -> Catalog:
    database = Database.connect(DB_ID, url, [table], embedder=embedder)
    database.prepare()
    catalog = Catalog([database])
    try:
        yield catalog
    finally:
        catalog.dispose()


def wait_until(condition, what: str, timeout_s: float = DEADLINE_S) -> float:
    """Seconds until ``condition()`` held."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"still not {what} after {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def counted(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def warnings_about(caplog, words: str) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and words in record.getMessage()]


def ranked(client, question: str):
    return client.get("/memories", params={"search_content": question, "search_mode": "semantic"})


def test_the_worker_embeds_every_queued_memory_in_batches_and_counts_them(database_url, table_name, fake):
    with opened(database_url, table_name, remote(fake)) as catalog:
        repository = catalog.repository()
        # A remote model is never asked inside a write: the memories wait for the worker.
        repository.insert([stored_memory(f"m{n:03}", memory=f"memory number {n}") for n in range(70)])
        assert repository.embedding_backlog() == 70 and not fake.requests
        before = counted("mnemo_embedding_worker_embedded_total", db_id=DB_ID, table=table_name)
        worker = EmbeddingWorker(catalog, poll_s=POLL_S, max_backoff_s=MAX_BACKOFF_S)
        worker.start()
        try:
            wait_until(lambda: repository.embedding_backlog() == 0, "embedded")
        finally:
            worker.stop()
        assert not worker._thread.is_alive()
        assert counted("mnemo_embedding_worker_embedded_total", db_id=DB_ID, table=table_name) - before == 70
        sizes = [len(request["json"]["input"]) for request in fake.requests]
        assert sum(sizes) == 70 and max(sizes) <= embedding_worker.BATCH
    drop_tables(database_url, table_name)


def test_a_memory_written_while_the_model_is_down_is_stored_at_once_and_found_by_meaning_once_it_is_back(
        sqlite_url, table_name, fake, quick, caplog):
    caplog.set_level(logging.INFO, logger="mnemo")
    fake.embedding_reply = EmbeddingReply(status=503)
    failures = counted("mnemo_embedding_worker_failures_total", reason="model")
    with opened(sqlite_url, table_name, remote(fake)) as catalog, \
            create_app(make_settings(table_name), catalog=catalog).test_client() as client:
        created = client.post("/memories", json={"memory": "Ada keeps bees on the roof", "user_id": "ada"})
        assert created.status_code == 200, created.text
        memory_id = created.json()["memory_id"]
        assert client.get(f"/memories/{memory_id}").status_code == 200
        # The worker keeps trying while the model refuses...
        wait_until(lambda: counted("mnemo_embedding_worker_failures_total", reason="model") - failures >= 3,
                   "retried")
        # ...and says so once for the outage, not once per try.
        assert len(warnings_about(caplog, "cannot embed")) == 1
        assert value(scrape(client), "mnemo_embedding_backlog", db_id=DB_ID, table=table_name) == 1
        ready = client.get("/ready")
        # A backlog does not make the service unready.
        assert ready.status_code == 200
        assert ready.json()["embedding_backlog"] == {DB_ID: {table_name: 1}}

        fake.embedding_reply = EmbeddingReply()
        drained = {DB_ID: {table_name: 0}}
        took = wait_until(lambda: client.get("/ready").json()["embedding_backlog"] == drained,
                          "embedded after the model came back")
        # Within the documented bound: the longest backoff, one poll, and the batch itself.
        assert took < MAX_BACKOFF_S + POLL_S + 2
        answer = ranked(client, "Ada keeps bees on the roof")
        assert answer.status_code == 200, answer.text
        best = answer.json()["data"][0]
        assert best["memory_id"] == memory_id and best["score"] == pytest.approx(1.0, abs=1e-5)
        assert value(scrape(client), "mnemo_embedding_backlog", db_id=DB_ID, table=table_name) == 0
    assert any("answers again" in record.getMessage() for record in caplog.records)
    drop_tables(sqlite_url, table_name)


def test_an_unreachable_database_is_warned_about_once_and_retried_with_growing_delays(
        table_name, fake, caplog):
    catalog = Catalog([Database.connect(DB_ID, "sqlite:////nonexistent-directory/memories.db",
                                        [table_name], embedder=remote(fake))])
    failures = counted("mnemo_embedding_worker_failures_total", reason="database")
    worker = EmbeddingWorker(catalog, poll_s=POLL_S, max_backoff_s=MAX_BACKOFF_S)
    worker.start()
    try:
        wait_until(lambda: counted("mnemo_embedding_worker_failures_total",
                                   reason="database") - failures >= 4, "retried")
    finally:
        worker.stop()
        catalog.dispose()
    [outage] = {id(table.database): table.database for table in worker.tables}.values()
    assert outage.failing and outage.delay_s == MAX_BACKOFF_S
    assert len(warnings_about(caplog, "cannot be reached")) == 1
    assert not fake.requests


def test_a_models_outage_is_warned_about_once_however_many_tables_it_holds_back(
        sqlite_url, table_name, fake, caplog):
    fake.embedding_reply = EmbeddingReply(status=503)
    empty = f"{table_name}_empty"
    database = Database.connect(DB_ID, sqlite_url, [empty, table_name], embedder=remote(fake))
    database.prepare()
    catalog = Catalog([database])
    # The table gone over first has nothing waiting: its empty queue asks the model nothing,
    # so it says nothing about whether the model is back.
    catalog.repository(DB_ID, table_name).insert([stored_memory("m1", memory="Ada keeps bees")])
    failures = counted("mnemo_embedding_worker_failures_total", reason="model")
    worker = EmbeddingWorker(catalog, poll_s=POLL_S, max_backoff_s=MAX_BACKOFF_S)
    worker.start()
    try:
        wait_until(lambda: counted("mnemo_embedding_worker_failures_total",
                                   reason="model") - failures >= 4, "retried")
    finally:
        worker.stop()
        catalog.dispose()
    assert len(warnings_about(caplog, "cannot embed")) == 1
    assert not any("answers again" in record.getMessage() for record in caplog.records)
    drop_tables(sqlite_url, table_name, empty)


def test_the_worker_stops_promptly_at_shutdown(sqlite_url, table_name, fake):
    with opened(sqlite_url, table_name, remote(fake)) as catalog:
        worker = EmbeddingWorker(catalog, poll_s=30, max_backoff_s=30)
        worker.start()
        time.sleep(0.1)  # idle, in its 30-second poll
        started = time.monotonic()
        worker.stop()
        assert time.monotonic() - started < 1
        assert not worker._thread.is_alive()


def test_no_worker_runs_where_embeddings_are_off(sqlite_url, table_name):
    with opened(sqlite_url, table_name, None) as catalog, embedding_worker.running(catalog) as worker:
        assert worker is None


# -- mnemo reindex --------------------------------------------------------------------------

@pytest.fixture
def embedded_by_fake_embed(sqlite_url, table_name, fake):
    """A table whose three memories are embedded by model fake-embed."""
    with opened(sqlite_url, table_name, remote(fake)) as catalog:
        repository = catalog.repository()
        repository.insert([stored_memory("m1", memory="Ada keeps bees on the roof"),
                           stored_memory("m2", memory="Ada is learning Welsh"),
                           stored_memory("m3", memory="Ada cycles to work")])
        assert repository.embed_backlog() == 3
    yield
    drop_tables(sqlite_url, table_name)


@pytest.fixture
def reindex_env(monkeypatch, sqlite_url, table_name, fake):
    """`mnemo reindex` run in this process, with model other-embed of the fake server."""
    for name in ("MNEMO_CONFIG", "MNEMO_EMBEDDINGS_API_KEY", "MNEMO_EMBEDDINGS_TIMEOUT",
                 "MNEMO_EMBEDDINGS_BATCH_SIZE", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = {"MNEMO_DATABASE_URL": sqlite_url, "MNEMO_DB_ID": DB_ID, "MNEMO_TABLE": table_name,
                "MNEMO_EMBEDDINGS": "openai", "MNEMO_EMBEDDINGS_MODEL": "other-embed",
                "MNEMO_EMBEDDINGS_BASE_URL": fake.base_url}
    for name, setting in settings.items():
        monkeypatch.setenv(name, setting)
    return monkeypatch


def test_reindex_makes_a_table_of_another_model_searchable_by_meaning_again(
        sqlite_url, table_name, fake, embedded_by_fake_embed, reindex_env, capsys):
    with opened(sqlite_url, table_name, remote(fake, "other-embed")) as catalog, \
            create_app(make_settings(table_name), catalog=catalog).test_client() as client:
        refused = ranked(client, "Who keeps bees?")
        assert refused.status_code == 400
        assert refused.json()["error_code"] == "EMBEDDING_MODEL_CHANGED"
        assert "mnemo reindex" in refused.json()["detail"]

        assert run_mnemo(["reindex"]) == 0
        printed = capsys.readouterr().out
        assert f"{DB_ID}/{table_name}: 3 memories embedded with openai/other-embed (8 dimensions)" in printed

        answer = ranked(client, "Ada cycles to work")
        assert answer.status_code == 200, answer.text
        assert [item["memory_id"] for item in answer.json()["data"]][:1] == ["m3"]
        assert answer.json()["meta"]["total_count"] == 3
    # Once every memory has this model's vector, reindexing again embeds nothing.
    assert run_mnemo(["reindex", "--db-id", DB_ID, "--table", table_name]) == 0
    assert f"{DB_ID}/{table_name}: 0 memories embedded" in capsys.readouterr().out


def test_reindex_with_embeddings_off_says_so_and_exits_2(reindex_env, capsys):
    reindex_env.setenv("MNEMO_EMBEDDINGS", "none")
    reindex_env.delenv("MNEMO_EMBEDDINGS_MODEL")
    reindex_env.delenv("MNEMO_EMBEDDINGS_BASE_URL")
    assert run_mnemo(["reindex"]) == 2
    assert "embeddings are off (MNEMO_EMBEDDINGS=none)" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "complaint"), [
    (["--db-id", "nope"], "no database found with id 'nope'"),
    (["--db-id", DB_ID, "--table", "nope"], "has table 'nope'"),
    (["--table", "nope"], "no configured database has a memory table 'nope'"),
])
def test_reindex_of_a_database_or_table_not_configured_exits_2(reindex_env, capsys, options, complaint):
    assert run_mnemo(["reindex", *options]) == 2
    assert complaint in capsys.readouterr().err


def test_reindex_exits_1_when_the_database_cannot_be_reached(reindex_env, capsys):
    reindex_env.setenv("MNEMO_DATABASE_URL", "sqlite:////nonexistent-directory/memories.db")
    assert run_mnemo(["reindex"]) == 1
    assert f"cannot use database {DB_ID!r}" in capsys.readouterr().err


def test_reindex_exits_1_when_the_model_cannot_embed_and_can_be_run_again(
        sqlite_url, table_name, fake, embedded_by_fake_embed, reindex_env, capsys):
    fake.embedding_reply = EmbeddingReply(status=500)
    assert run_mnemo(["reindex"]) == 1
    assert "run `mnemo reindex` again" in capsys.readouterr().err
    fake.embedding_reply = EmbeddingReply()
    assert run_mnemo(["reindex"]) == 0
    assert "3 memories embedded with openai/other-embed" in capsys.readouterr().out
