"""Fixtures: every behaviour test runs once on SQLite and once on PostgreSQL.

PostgreSQL runs need ``MNEMO_TEST_POSTGRES_URL`` (``.ci/run`` sets it); without it they are
skipped and say why. Each test gets a memory table family of its own, dropped afterwards, so
tests never see each other's data, on either engine.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mnemo.app import create_app
from mnemo.config import DatabaseConfig, Settings
from storage import Catalog, Database, Memory

POSTGRES_URL = os.environ.get("MNEMO_TEST_POSTGRES_URL")
NO_POSTGRES = "MNEMO_TEST_POSTGRES_URL is not set: PostgreSQL runs are skipped"
DB_ID = "mnemo"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/memories.db"
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    return POSTGRES_URL


@pytest.fixture
def table_name():
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def catalog(database_url, table_name):
    database = Database.connect(DB_ID, database_url, [table_name])
    database.create_schema()
    catalog = Catalog([database])
    yield catalog
    database.metadata.drop_all(database.engine)
    catalog.dispose()


@pytest.fixture
def repository(catalog):
    return catalog.repository()


def make_settings(table_name: str, url: str = "sqlite://", **overrides) -> Settings:
    database = DatabaseConfig(DB_ID, url, (table_name,))
    return Settings(databases=(database,), validate_responses=True, **overrides)


@pytest.fixture
def app(catalog, table_name):
    return create_app(make_settings(table_name), catalog=catalog)


@pytest.fixture
def client(app):
    with app.test_client() as client:
        yield client


@pytest.fixture
def create(client):
    """Create a memory through the API; returns the answer's JSON."""

    def create(memory="User likes coffee", user_id="user-1", topics=None, **query):
        response = client.post("/memories", json={"memory": memory, "user_id": user_id,
                                                  "topics": topics}, params=query)
        assert response.status_code == 200, response.text
        return response.json()

    return create


BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


def stored_memory(memory_id: str, *, user_id="user-1", memory="text", topics=(), agent_id=None,
                  team_id=None, minutes=0, created_minutes=None) -> Memory:
    """A complete memory with chosen id and timestamps, for repository.insert."""
    updated = BASE_TIME + timedelta(minutes=minutes)
    created = BASE_TIME + timedelta(minutes=minutes if created_minutes is None else created_minutes)
    return Memory(memory_id, memory, list(topics), user_id, agent_id, team_id, created, updated)
