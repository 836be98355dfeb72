"""Fixtures: every behaviour test runs once on SQLite and once on PostgreSQL.

PostgreSQL runs need ``MNEMO_TEST_POSTGRES_URL`` (``.ci/run`` sets it); without it they are
skipped and say why. Each test gets a memory table family of its own, dropped afterwards, so
tests never see each other's data, on either engine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from mnemo.app import create_app
from mnemo.config import DatabaseConfig, Settings
from storage import Catalog, Database, Memory, migration

from .fake_openai import EmbeddingReply, FakeOpenAI

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


def drop_tables(url: str, *tables: str) -> None:
    """Drop memory table families: migrated down to nothing, version table and all (and any
    tables made without migrations)."""
    database = Database.connect(DB_ID, url, list(tables))
    for table in tables:
        migration.downgrade(database.engine, table, "base")
    database.metadata.drop_all(database.engine)
    database.dispose()


@pytest.fixture
def catalog(database_url, table_name):
    # As mnemo serve does: the migrations create the tables.
    database = Database.connect(DB_ID, database_url, [table_name])
    database.prepare()
    catalog = Catalog([database])
    yield catalog
    catalog.dispose()
    drop_tables(database_url, table_name)


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
def client_with(catalog, table_name):
    """A client of an app built with these settings (``max_body_bytes=100``, ...)."""
    clients = []

    def build(**overrides):
        app = create_app(make_settings(table_name, **overrides), catalog=catalog)
        clients.append(app.test_client().__enter__())
        return clients[-1]

    yield build
    for client in clients:
        client.__exit__(None, None, None)


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


STARTUP_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def fake_openai_server():
    """A fake OpenAI-compatible server on loopback (tests/fake_openai.py), for one test module."""
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_openai_server):
    """The module's fake OpenAI-compatible server, its embeddings answer and requests reset."""
    fake_openai_server.embedding_reply = EmbeddingReply()
    fake_openai_server.requests.clear()
    return fake_openai_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mnemo_command() -> list[str]:
    installed = Path(sys.executable).with_name("mnemo")
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "mnemo.cli"]


def start_server(command: list[str], env: dict, probe: str = "/health", cwd=None):
    """Start a server process on a free port ("{port}" in ``command``); (process, base URL).

    Ready once ``probe`` answers anything over HTTP. The process leads its own process group,
    so stop_server reaches its workers too.
    """
    port = free_port()
    # Its output goes to a file, not a pipe: a pipe nobody reads until the server stops fills up
    # (64 KiB) and then blocks the server's next log line, and with it the server.
    output = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the process (ServerOutput.close)
    process = subprocess.Popen([part.replace("{port}", str(port)) for part in command],
                               env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    process.stdout = ServerOutput(output)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{command[0]} exited: {process.stdout.read().decode()}")
        try:
            httpx.get(base + probe, timeout=1)
            return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    stop_server(process)
    raise AssertionError(f"{command} did not start in time")


class ServerOutput:
    """What a server started by start_server has printed so far: ``read()`` gives all of it."""

    def __init__(self, file):
        self._file = file

    def read(self) -> bytes:
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        self._file.close()


def stop_server(process: subprocess.Popen) -> int:
    """SIGTERM the server's process group and wait; its exit code."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def server_env(**settings: str) -> dict:
    """This environment without any Mnemo or Agno setting, plus ``settings``."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("MNEMO_") and name not in ("OS_SECURITY_KEY", "JWT_VERIFICATION_KEY")}
    return {**env, "AGNO_TELEMETRY": "false", **settings}


@pytest.fixture
def serve(database_url, table_name, tmp_path):
    """Start ``mnemo serve`` with the given extra arguments; stopped (SIGTERM) afterwards."""
    processes = []

    def start(*arguments: str, security_key: str | None = None, **settings: str) -> str:
        env = server_env(MNEMO_DATABASE_URL=database_url, MNEMO_DB_ID=DB_ID, MNEMO_TABLE=table_name,
                         MNEMO_VALIDATE_RESPONSES="true", **settings)
        if security_key:
            env["MNEMO_SECURITY_KEY"] = security_key
        process, base = start_server([*mnemo_command(), "serve", "--port", "{port}", *arguments],
                                     env, cwd=tmp_path)
        processes.append(process)
        return base

    yield start
    for process in processes:
        # uvicorn re-raises SIGTERM once it has shut down, so that is an orderly exit too.
        assert stop_server(process) in (0, -signal.SIGTERM), process.stdout.read().decode()[-2000:]
    drop_tables(database_url, table_name)


def error_json(response) -> dict:
    """An error answer's body without its request_id, once that is checked to be the one the
    X-Request-ID header carries."""
    body = response.json()
    assert body.pop("request_id") == response.headers["X-Request-ID"]
    return body
