"""Several databases behind db_id/table, declared in a TOML config file."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from mnemo.app import create_app
from mnemo.config import ConfigError, DatabaseConfig, Settings

from .conftest import POSTGRES_URL, drop_tables


def write(tmp_path, text: str) -> str:
    path = tmp_path / "mnemo.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_config_file_declares_databases_and_their_tables(tmp_path):
    path = write(tmp_path, """
[[databases]]
id = "main"
url = "sqlite:///main.db"
tables = ["memories", "archive"]

[[databases]]
id = "other"
url = "postgresql://u@h/db"
""")
    settings = Settings.from_env({"MNEMO_DATABASE_URL": "ignored"}, config_path=path)
    assert settings.databases == (
        DatabaseConfig("main", "sqlite:///main.db", ("memories", "archive")),
        DatabaseConfig("other", "postgresql://u@h/db", ("mnemo_memories",)),
    )
    assert Settings.from_env({"MNEMO_CONFIG": path}) == settings


def test_without_a_config_file_the_environment_names_one_database():
    settings = Settings.from_env({"MNEMO_DATABASE_URL": "sqlite:///x.db", "MNEMO_DB_ID": "x",
                                  "MNEMO_TABLE": "t"})
    assert settings.databases == (DatabaseConfig("x", "sqlite:///x.db", ("t",)),)


@pytest.mark.parametrize(("text", "complaint"), [
    ("[[databases]\n", "not valid TOML"),
    ("title = 'no databases'\n", "declares no [[databases]]"),
    ("[[databases]]\nid = 'a'\n", "needs an id and a url"),
    ("[[databases]]\nid = 'a'\nurl = 'sqlite://'\nhost = 'x'\n", "unknown keys: host"),
    ("[[databases]]\nid = 'a'\nurl = 'sqlite://'\ntables = ['bad name']\n", "table name"),
    ("[[databases]]\nid = 'a'\nurl = 'sqlite://'\ntables = []\n", "at least one table"),
    ("[[databases]]\nid = 'a'\nurl = 'sqlite://'\n[[databases]]\nid = 'a'\nurl = 'sqlite://'\n",
     "two databases share the id 'a'"),
])
def test_a_broken_config_file_is_refused_saying_what_is_wrong(tmp_path, text, complaint):
    with pytest.raises(ConfigError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        Settings.from_env({}, config_path=write(tmp_path, text))


def test_a_missing_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.from_env({}, config_path=str(tmp_path / "absent.toml"))


@pytest.fixture
def several(tmp_path):
    """One server over two SQLite files (two tables in the first) and, when available, PostgreSQL."""
    suffix = uuid.uuid4().hex[:10]
    databases = [
        DatabaseConfig("first", f"sqlite:///{tmp_path}/first.db", (f"a_{suffix}", f"b_{suffix}")),
        DatabaseConfig("second", f"sqlite:///{tmp_path}/second.db", (f"a_{suffix}",)),
    ]
    if POSTGRES_URL:
        databases.append(DatabaseConfig("pg", POSTGRES_URL, (f"a_{suffix}",)))
    settings = Settings(databases=tuple(databases), validate_responses=True)
    catalog = settings.catalog()
    catalog.prepare()
    with create_app(settings, catalog=catalog).test_client() as client:
        yield client, databases
    catalog.dispose()
    for database in databases:
        drop_tables(database.url, *database.tables)


def test_data_never_crosses_between_databases_or_tables(several):
    client, databases = several
    places = [(d.db_id, table) for d in databases for table in d.tables]
    created = {}
    for db_id, table in places:
        created[db_id, table] = client.post(
            "/memories", params={"db_id": db_id, "table": table},
            json={"memory": f"in {db_id}/{table}", "user_id": "u", "topics": [f"{db_id}-{table}"]},
        ).json()["memory_id"]
    for (db_id, table), memory_id in created.items():
        query = {"db_id": db_id, "table": table}
        listed = client.get("/memories", params=query).json()["data"]
        assert [m["memory_id"] for m in listed] == [memory_id]
        assert client.get("/memory_topics", params=query).json() == [f"{db_id}-{table}"]
        for other in created.values():
            if other != memory_id:
                assert client.get(f"/memories/{other}", params=query).status_code == 404


def test_without_db_id_requests_go_to_the_first_database_and_its_first_table(several):
    client, databases = several
    first = databases[0]
    memory_id = client.post("/memories", json={"memory": "x", "user_id": "u"}).json()["memory_id"]
    query = {"db_id": first.db_id, "table": first.tables[0]}
    assert client.get(f"/memories/{memory_id}", params=query).status_code == 200


def test_db_id_alone_selects_that_databases_first_table(several):
    client, databases = several
    second = databases[1]
    memory_id = client.post("/memories", params={"db_id": second.db_id},
                            json={"memory": "x", "user_id": "u"}).json()["memory_id"]
    query = {"db_id": second.db_id, "table": second.tables[0]}
    assert client.get(f"/memories/{memory_id}", params=query).status_code == 200


def test_a_request_can_never_create_a_table(several):
    client, databases = several
    response = client.post("/memories", params={"db_id": "first", "table": "invented"},
                           json={"memory": "x", "user_id": "u"})
    assert response.status_code == 404
    engine = sa.create_engine(databases[0].url)
    assert not any("invented" in name for name in sa.inspect(engine).get_table_names())
    engine.dispose()


def test_the_app_serves_the_configured_databases(tmp_path):
    settings = Settings.from_env({}, config_path=write(tmp_path, f"""
[[databases]]
id = "only"
url = "sqlite:///{tmp_path}/only.db"
tables = ["notes"]
"""))
    with create_app(settings).test_client() as client:
        assert client.get("/memories", params={"db_id": "only", "table": "notes"}).status_code == 200
        assert client.get("/memories", params={"db_id": "mnemo"}).status_code == 404


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "postgresql+asyncpg://u@h/db",
                                 "sqlite+aiosqlite:///x.db"])
def test_a_database_url_mnemo_cannot_use_is_refused_by_name(url):
    from storage.database import create_engine

    with pytest.raises(ValueError, match="use (sqlite|postgresql)"):
        create_engine(url)
