"""Alembic owns the schema: every migration runs from empty on both engines, the migrated
schema is the models' schema, and nothing serves a database behind head."""

from __future__ import annotations

import argparse
import re
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from mnemo.cli import EXIT_FAILURE, EXIT_USAGE
from storage import Database, MemoryQuery, SchemaBehind, migration
from storage.database import create_engine
from storage.schema import UtcDateTime

from .command_line import run_mnemo
from .conftest import DB_ID, NO_POSTGRES, POSTGRES_URL, drop_tables, free_port

ROOT = Path(__file__).resolve().parent.parent

# A later revision, so that a database can be behind head: it adds one index to the family.
PROBE_REVISION = '''
from alembic import context, op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    name = context.config.attributes["table"]
    op.create_index(f"ix_{{name}}_probe", name, ["agent_id", "created_at"])


def downgrade():
    name = context.config.attributes["table"]
    op.drop_index(f"ix_{{name}}_probe", table_name=name)
'''


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def family(database_url, table_name):
    """A family name that the test may create; dropped afterwards whatever state it is in."""
    yield table_name
    drop_tables(database_url, table_name)


@pytest.fixture
def later_revision(tmp_path, monkeypatch):
    """This Mnemo's migrations plus one more (9999), as a newer Mnemo would ship them.

    Request it before ``family``, so that the family is dropped while 9999 is still known."""
    migrations = tmp_path / "migrations"
    shutil.copytree(migration.MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "9999_probe.py").write_text(PROBE_REVISION.format(head=migration.head()))
    monkeypatch.setattr(migration, "MIGRATIONS", migrations)
    migration.scripts.cache_clear()
    yield "9999"
    migration.scripts.cache_clear()


@pytest.fixture
def config_file(tmp_path, database_url, family, monkeypatch):
    # Set, not deleted, so that the MNEMO_CONFIG serve exports for its workers is undone after.
    monkeypatch.setenv("MNEMO_CONFIG", "")
    path = tmp_path / "mnemo.toml"
    path.write_text(f'[[databases]]\nid = "{DB_ID}"\nurl = "{database_url}"\ntables = ["{family}"]\n')
    return str(path)


def revision_of(engine, table: str) -> str | None:
    with engine.connect() as connection:
        return migration.inspect_family(connection, table).revision


# The newest revision this Mnemo ships (later_revision adds one after it).
SHIPPED_HEAD = migration.head()
QUOTED_NAME = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)"')


def family_objects(engine, table: str) -> dict[str, str]:
    """Every table, index and trigger of the family with its DDL, the family's name replaced."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(sa.text(
                "SELECT name, sql FROM sqlite_master WHERE (name = :t OR name LIKE :p ESCAPE '\\' "
                "OR name LIKE :i ESCAPE '\\') AND name NOT LIKE :v ESCAPE '\\' AND sql IS NOT NULL"),
                {"t": table, "p": f"{table}\\_%", "i": f"ix\\_{table}\\_%", "v": f"{table}\\_alembic%"})
        else:
            tables = [*migration.family_tables(table), f"{table}_search"]
            rows = [*connection.execute(sa.text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN :tables").bindparams(
                    sa.bindparam("tables", expanding=True)), {"tables": tables}),
                # The search table, its trigger and the trigger's function: outside Alembic's
                # comparison, like SQLite's FTS5 table.
                *connection.execute(sa.text(
                    "SELECT table_name, string_agg(column_name || ' ' || data_type || ' ' || is_nullable, "
                    "', ' ORDER BY ordinal_position) FROM information_schema.columns "
                    "WHERE table_name = :search GROUP BY table_name"), {"search": f"{table}_search"}),
                *connection.execute(sa.text(
                    "SELECT 'trigger ' || tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                    "WHERE tgrelid = to_regclass(quote_ident(:table)) AND NOT tgisinternal"),
                    {"table": table}),
                *connection.execute(sa.text(
                    "SELECT 'function ' || proname, pg_get_functiondef(oid) FROM pg_proc "
                    "WHERE proname = :function"), {"function": f"{table}_search_sync"})]
        # SQLite keeps each statement as written: a table that a migration rebuilt in batch
        # mode has its name quoted, which changes nothing about it.
        return {name.replace(table, "F"): QUOTED_NAME.sub(r"\1", sql).replace(table, "F")
                for name, sql in rows}


def test_every_migration_upgrades_from_empty_one_at_a_time_and_downgrades_to_nothing(engine, family):
    revisions = list(reversed(list(migration.scripts().walk_revisions())))
    assert revisions[0].down_revision is None
    for script in revisions:
        with migration.locked(engine) as connection:
            command.upgrade(migration.alembic_config(connection, family), script.revision)
        assert revision_of(engine, family) == script.revision
    assert revision_of(engine, family) == migration.head()
    for script in reversed(revisions):
        with migration.locked(engine) as connection:
            command.downgrade(migration.alembic_config(connection, family), script.down_revision or "base")
    assert family_objects(engine, family) == {}
    assert not any(sa.inspect(engine).has_table(name) for name in migration.family_tables(family))


def test_the_migrated_schema_is_the_schema_the_models_declare(engine, database_url, family):
    migration.upgrade(engine, family)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "version_table": migration.version_table(family),
            **migration.comparison_filters(family)})
        assert compare_metadata(context, migration.family_metadata(family)) == []
    # Alembic compares neither SQLite's search table and triggers nor PostgreSQL's index
    # methods and operator classes: compare the DDL itself with what the models create.
    reference = f"r{uuid.uuid4().hex[:16]}"
    models = migration.family_metadata(reference)
    models.create_all(engine)
    try:
        migrated, declared = family_objects(engine, family), family_objects(engine, reference)
        assert migrated == declared
        search = ({"F_search", "F_search_insert", "F_search_update", "F_search_delete"}
                  if engine.dialect.name == "sqlite"
                  else {"F_search", "ix_F_search", "trigger F_search_sync", "function F_search_sync"})
        assert search <= migrated.keys()
    finally:
        models.drop_all(engine)


def test_serve_refuses_a_database_behind_head_and_says_to_run_mnemo_migrate(
        later_revision, engine, family, config_file, capsys):
    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), SHIPPED_HEAD)
    assert run_mnemo(["serve", "--port", str(free_port()), "--config", config_file]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert f"table {family!r} at revision {SHIPPED_HEAD}, behind head 9999" in err
    assert "run `mnemo migrate`" in err
    assert revision_of(engine, family) == SHIPPED_HEAD
    with pytest.raises(SchemaBehind):
        Database.connect(DB_ID, str(engine.url), [family]).prepare()


def test_creating_a_family_never_migrates_one_that_appeared_behind_head_meanwhile(
        later_revision, engine, family):
    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), SHIPPED_HEAD)
    with pytest.raises(SchemaBehind, match=f"at revision {SHIPPED_HEAD}, behind head 9999"):
        migration.upgrade(engine, family, create_only=True)
    assert revision_of(engine, family) == SHIPPED_HEAD


def test_serve_with_migrate_upgrades_the_database_before_serving(
        later_revision, engine, family, config_file, monkeypatch):
    import uvicorn

    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), SHIPPED_HEAD)
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(kwargs))
    assert run_mnemo(["serve", "--port", str(free_port()), "--config", config_file, "--workers", "1",
                      "--migrate"]) == 0
    assert served and revision_of(engine, family) == "9999"


def test_migrate_upgrades_a_database_behind_head_and_keeps_its_memories(
        later_revision, engine, family, config_file, capsys):
    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), SHIPPED_HEAD)
    database = Database.connect(DB_ID, str(engine.url), [family])
    database.repositories[family].create(memory="kept", user_id="u", topics=["t"])
    database.dispose()
    assert run_mnemo(["migrate", "--config", config_file, "--check"]) == EXIT_FAILURE
    assert "behind head 9999" in capsys.readouterr().out
    assert run_mnemo(["migrate", "--config", config_file]) == 0
    assert f"{DB_ID}/{family}: upgraded from revision {SHIPPED_HEAD} to 9999" in capsys.readouterr().out
    assert run_mnemo(["migrate", "--config", config_file, "--check"]) == 0
    database = Database.connect(DB_ID, str(engine.url), [family])
    assert [m.memory for m in database.repositories[family].scan(None, 10)] == ["kept"]
    database.dispose()


def test_migrate_creates_a_new_family_and_running_it_again_changes_nothing(engine, family, config_file,
                                                                         capsys):
    assert run_mnemo(["migrate", "--config", config_file]) == 0
    assert capsys.readouterr().out == f"{DB_ID}/{family}: created at revision {migration.head()}\n"
    assert run_mnemo(["migrate", "--config", config_file]) == 0
    assert "already at revision" in capsys.readouterr().out
    assert revision_of(engine, family) == migration.head()


def test_serve_creates_a_family_that_does_not_exist_yet_without_being_asked(engine, family, config_file,
                                                                          monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    assert run_mnemo(["serve", "--port", str(free_port()), "--config", config_file, "--workers", "1"]) == 0
    assert revision_of(engine, family) == migration.head()


def test_tables_made_before_migrations_are_refused_by_serve_and_recorded_by_migrate(
        engine, family, config_file, capsys):
    # What create_schema() left before migrations existed: revision 0001's tables, unversioned.
    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), migration.BASELINE)
    instant = sa.bindparam("at", datetime(2025, 1, 1, tzinfo=UTC), type_=UtcDateTime)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {migration.version_table(family)}"))
        connection.execute(sa.text(
            f"INSERT INTO {family} (memory_id, memory, memory_folded, user_id, created_at, updated_at) "
            "VALUES ('m1', 'old', 'old', 'u', :at, :at)").bindparams(instant))
    assert run_mnemo(["serve", "--port", str(free_port()), "--config", config_file]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "created before Mnemo versioned its schema" in err and "run `mnemo migrate`" in err
    assert run_mnemo(["migrate", "--config", config_file]) == 0
    assert "recorded as revision 0001" in capsys.readouterr().out
    assert revision_of(engine, family) == migration.head()
    database = Database.connect(DB_ID, str(engine.url), [family])
    assert [m.memory for m in database.repositories[family].scan(None, 10)] == ["old"]
    database.dispose()


def test_a_family_at_a_revision_this_mnemo_does_not_know_is_refused(engine, family, config_file, capsys):
    migration.upgrade(engine, family)
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {migration.version_table(family)} SET version_num = 'abc123'"))
    assert run_mnemo(["migrate", "--config", config_file]) == EXIT_FAILURE
    assert "revision abc123, which this Mnemo does not know" in capsys.readouterr().err
    assert run_mnemo(["serve", "--port", str(free_port()), "--config", config_file]) == EXIT_FAILURE
    assert "newer Mnemo" in capsys.readouterr().err
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {migration.version_table(family)} "
                                   f"SET version_num = '{migration.head()}'"))


def test_an_incomplete_family_without_a_revision_is_refused_not_guessed_at(engine, family, config_file,
                                                                         capsys):
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {family}_topics (x INTEGER)"))
    assert run_mnemo(["migrate", "--config", config_file]) == EXIT_FAILURE
    assert f"only {family}_topics exist" in capsys.readouterr().err
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {family}_topics"))


def test_several_processes_migrating_at_once_create_the_family_once(database_url, family):
    engines = [create_engine(database_url) for _ in range(3)]
    failures = []

    def run(engine):
        try:
            migration.upgrade(engine, family)
        except Exception as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert revision_of(engines[0], family) == migration.head()
    for engine in engines:
        engine.dispose()


def test_migrate_exits_1_when_a_database_cannot_be_reached(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MNEMO_CONFIG", raising=False)
    monkeypatch.setenv("MNEMO_DATABASE_URL", "sqlite:////nonexistent-directory/memories.db")
    assert run_mnemo(["migrate"]) == EXIT_FAILURE
    assert "cannot open database 'mnemo'" in capsys.readouterr().err


def test_migrate_exits_2_on_a_bad_configuration(monkeypatch, capsys):
    monkeypatch.delenv("MNEMO_CONFIG", raising=False)
    monkeypatch.setenv("MNEMO_TABLE", "no spaces")
    assert run_mnemo(["migrate"]) == EXIT_USAGE
    assert "table name" in capsys.readouterr().err


def test_alembics_own_command_line_migrates_a_named_family(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path}/scratch.db"
    options = argparse.Namespace(x=[f"url={url}", "table=scratch"])
    command.upgrade(Config(str(ROOT / "alembic.ini"), cmd_opts=options), "head")
    engine = create_engine(url)
    assert revision_of(engine, "scratch") == migration.head()
    engine.dispose()


def test_upgrading_to_0002_gives_existing_topic_rows_their_memorys_times(engine, family):
    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), "0001")
    times = {"early": datetime(2025, 1, 1, tzinfo=UTC), "late": datetime(2025, 6, 1, tzinfo=UTC)}
    with engine.begin() as connection:
        for memory_id, at in times.items():
            connection.execute(sa.text(
                f"INSERT INTO {family} (memory_id, memory, memory_folded, user_id, created_at, updated_at) "
                "VALUES (:id, :text, :folded, 'u', :at, :at)").bindparams(
                    sa.bindparam("at", at, type_=UtcDateTime)), {"id": memory_id, "text": memory_id,
                                                                 "folded": memory_id})
            connection.execute(sa.text(f"INSERT INTO {family}_topics (memory_id, topic, position, user_id) "
                                       "VALUES (:m, 't', 0, 'u')"), {"m": memory_id})
    migration.upgrade(engine, family)
    database = Database.connect(DB_ID, str(engine.url), [family])
    try:
        repository = database.repositories[family]
        listed = repository.list(MemoryQuery(topics=["t"]))
        assert [(m.memory_id, m.updated_at) for m in listed.items] == [
            ("late", times["late"]), ("early", times["early"])]
        oldest_first = repository.list(MemoryQuery(topics=["t"], sort_by="created_at", sort_order="asc"))
        assert [m.memory_id for m in oldest_first.items] == ["early", "late"]
    finally:
        database.dispose()


def test_upgrading_to_0003_gives_each_existing_memory_a_create_entry_as_it_stands(engine, family):
    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), "0002")
    created, updated = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 6, 1, 12, 30, tzinfo=UTC)
    with engine.begin() as connection:
        for memory_id, user in (("with-topics", "u"), ("bare", None)):
            connection.execute(sa.text(
                f"INSERT INTO {family} (memory_id, memory, memory_folded, user_id, agent_id, created_at, "
                "updated_at) VALUES (:id, :text, :text, :user, 'agent', :created, :updated)").bindparams(
                    sa.bindparam("created", created, type_=UtcDateTime),
                    sa.bindparam("updated", updated, type_=UtcDateTime)),
                {"id": memory_id, "text": f"text of {memory_id}", "user": user})
        for position, topic in enumerate(["zeta", "alpha", "mid"]):
            connection.execute(sa.text(
                f"INSERT INTO {family}_topics (memory_id, topic, position, user_id, created_at, updated_at) "
                "VALUES ('with-topics', :topic, :position, 'u', :at, :at)").bindparams(
                    sa.bindparam("at", updated, type_=UtcDateTime)), {"topic": topic, "position": position})
    migration.upgrade(engine, family)
    database = Database.connect(DB_ID, str(engine.url), [family])
    try:
        repository = database.repositories[family]
        [entry] = repository.history("with-topics")
        assert (entry.version, entry.event, entry.memory, entry.topics) == (
            1, "create", "text of with-topics", ["zeta", "alpha", "mid"])
        assert (entry.user_id, entry.agent_id, entry.team_id, entry.changed_at) == (
            "u", "agent", None, updated)
        [bare] = repository.history("bare")
        assert (bare.event, bare.topics, bare.user_id) == ("create", [], None)
        # History goes on from there.
        repository.update("with-topics", user_id="u", memory="changed", topics=[])
        assert [(e.version, e.event) for e in repository.history("with-topics")] == [
            (1, "create"), (2, "update")]
    finally:
        database.dispose()


def test_upgrading_to_0006_finds_existing_memories_by_search_and_keeps_finding_them(engine, family):
    with migration.locked(engine) as connection:
        command.upgrade(migration.alembic_config(connection, family), "0005")
    at = datetime(2025, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        for memory_id, text in (("tea", "Drinks green TEA"), ("coffee", "Drinks coffee")):
            connection.execute(sa.text(
                f"INSERT INTO {family} (memory_id, memory, memory_folded, user_id, created_at, updated_at) "
                "VALUES (:id, :text, :folded, 'u', :at, :at)").bindparams(
                    sa.bindparam("at", at, type_=UtcDateTime)),
                {"id": memory_id, "text": text, "folded": text.casefold()})
    migration.upgrade(engine, family)
    database = Database.connect(DB_ID, str(engine.url), [family])
    try:
        repository = database.repositories[family]

        def found(needle: str) -> list[str]:
            page = repository.list(MemoryQuery(search_content=needle))
            assert page.total_count == len(page.items)
            return sorted(memory.memory_id for memory in page.items)

        assert found("drinks") == ["coffee", "tea"]
        assert found("green tea") == ["tea"]
        repository.update("tea", user_id="u", memory="Drinks oolong", topics=[])
        repository.delete(["coffee"], user_id="u")
        assert found("drinks") == ["tea"]
        assert found("green tea") == []
        assert found("oolong") == ["tea"]
    finally:
        database.dispose()


def test_a_family_named_with_capitals_keeps_its_search_in_step_and_downgrades_to_nothing(
        engine, database_url):
    family = f"Mixed{uuid.uuid4().hex[:8]}"
    try:
        migration.upgrade(engine, family)
        database = Database.connect(DB_ID, database_url, [family])
        try:
            repository = database.repositories[family]
            made = repository.create(memory="Keeps BEES", user_id="u")
            assert [m.memory_id for m in repository.list(MemoryQuery(search_content="bees")).items] == [
                made.memory_id]
            repository.delete([made.memory_id], user_id="u")
            assert repository.list(MemoryQuery(search_content="bees")).total_count == 0
        finally:
            database.dispose()
        migration.downgrade(engine, family, "base")
        assert family_objects(engine, family) == {}
        names = [*migration.family_tables(family), f"{family}_search", migration.version_table(family)]
        assert not any(sa.inspect(engine).has_table(name) for name in names)
    finally:
        drop_tables(database_url, family)


@pytest.mark.parametrize("damage", [
    # What restoring `pg_dump --table=...` of the family without the trigger's function leaves.
    'DROP FUNCTION "{t}_search_sync"() CASCADE',
    'ALTER TABLE "{t}" DISABLE TRIGGER "{t}_search_sync"',
    # Fires only in sessions replaying replication: never for Mnemo's own writes.
    'ALTER TABLE "{t}" ENABLE REPLICA TRIGGER "{t}_search_sync"',
], ids=["function dropped", "trigger disabled", "trigger for replicas only"])
def test_a_postgresql_search_table_out_of_step_is_refused_and_put_back_by_migrate(
        damage, table_name, tmp_path, monkeypatch, capsys):
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    engine = create_engine(POSTGRES_URL)
    monkeypatch.setenv("MNEMO_CONFIG", "")
    config = tmp_path / "mnemo.toml"
    config.write_text(f'[[databases]]\nid = "{DB_ID}"\nurl = "{POSTGRES_URL}"\ntables = ["{table_name}"]\n')
    try:
        migration.upgrade(engine, table_name)
        database = Database.connect(DB_ID, POSTGRES_URL, [table_name])
        repository = database.repositories[table_name]
        kept = repository.create(memory="kept tea", user_id="u")
        gone = repository.create(memory="gone tea", user_id="u")
        with engine.begin() as connection:
            connection.exec_driver_sql(damage.format(t=table_name))
        # Written while nothing kept the search table in step.
        unseen = repository.create(memory="unseen tea", user_id="u")
        repository.delete([gone.memory_id], user_id="u")
        database.dispose()

        with pytest.raises(SchemaBehind, match="trigger that keeps its search table in step"):
            Database.connect(DB_ID, POSTGRES_URL, [table_name]).prepare()
        assert run_mnemo(["migrate", "--config", str(config), "--check"]) == EXIT_FAILURE
        assert "is missing or disabled" in capsys.readouterr().out
        assert run_mnemo(["migrate", "--config", str(config)]) == 0
        assert "search trigger put back" in capsys.readouterr().out
        assert run_mnemo(["migrate", "--config", str(config), "--check"]) == 0

        database = Database.connect(DB_ID, POSTGRES_URL, [table_name])
        repository = database.repositories[table_name]
        later = repository.create(memory="later tea", user_id="u")
        page = repository.list(MemoryQuery(search_content="tea"))
        assert sorted(m.memory_id for m in page.items) == sorted(
            m.memory_id for m in (kept, unseen, later))
        assert page.total_count == 3
        database.dispose()
    finally:
        engine.dispose()
        drop_tables(POSTGRES_URL, table_name)
