"""/ready touches every configured database; /health never does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mnemo.app import create_app
from mnemo.config import ConfigError, Settings
from storage import Catalog, Database

from .conftest import DB_ID, make_settings, stored_memory


def test_ready_answers_ok_for_every_database_that_answers_with_each_tables_embedding_backlog(
        client, repository, table_name):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "databases": {DB_ID: "ok"},
                               "embedding_backlog": {DB_ID: {table_name: 0}}}
    # Embeddings are off here: what is written waits, and is counted, yet the service is ready.
    repository.insert([stored_memory("a"), stored_memory("b")])
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["embedding_backlog"] == {DB_ID: {table_name: 2}}


def test_ready_is_503_naming_the_database_that_does_not_answer(catalog, table_name, tmp_path):
    # A second database whose file cannot be opened: its directory does not exist.
    broken = Database.connect("archive", f"sqlite:///{tmp_path}/missing/dir/memories.db", [table_name])
    app = create_app(make_settings(table_name),
                     catalog=Catalog([*catalog.databases.values(), broken]))
    with app.test_client() as client:
        response = client.get("/ready")
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        body = response.json()
        assert body["databases"] == {DB_ID: "ok", "archive": "unavailable"}
        # The backlog of the databases that answered, still.
        assert body["embedding_backlog"] == {DB_ID: {table_name: 0}}
        assert (body["status"], body["error_code"]) == ("unavailable", "DATABASE_UNAVAILABLE")
        assert "archive" in body["detail"]
        # Liveness does not depend on the databases.
        assert client.get("/health").status_code == 200
    broken.dispose()


def test_the_idempotency_ttl_is_read_from_the_environment():
    assert Settings.from_env({"MNEMO_IDEMPOTENCY_TTL": "60"}).idempotency_ttl == timedelta(seconds=60)
    assert Settings.from_env({}).idempotency_ttl == timedelta(hours=24)


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_an_idempotency_ttl_that_is_not_a_positive_number_of_seconds_is_refused(value):
    with pytest.raises(ConfigError, match="MNEMO_IDEMPOTENCY_TTL"):
        Settings.from_env({"MNEMO_IDEMPOTENCY_TTL": value})
