"""mnemo export, import and import-agno: the JSON lines format, batches, bad input, Agno databases."""

from __future__ import annotations

import codecs
import errno
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mnemo import transfer
from mnemo.cli import EXIT_FAILURE, EXIT_USAGE
from storage import Memory, MemoryRepository
from storage.agno_source import read_only_engine

from .command_line import run_mnemo
from .conftest import DB_ID, NO_POSTGRES, POSTGRES_URL, drop_tables, stored_memory

DATASET = Path(__file__).resolve().parents[2] / "shared/bench/dataset.py"
KEYS = ["memory_id", "memory", "user_id", "agent_id", "team_id", "topics", "created_at", "updated_at"]
SUMMARY = re.compile(r"imported (\d+) memories in \d+\.\d s \(\d+/s\)")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def fresh_table(database_url):
    """A second memory table in the same database, empty until a test fills it; dropped after."""
    name = f"t{uuid.uuid4().hex[:16]}"
    yield name
    drop_tables(database_url, name)


@pytest.fixture
def mnemo(catalog, database_url, table_name, fresh_table, tmp_path, monkeypatch, capsys):
    """Run ``mnemo VERB --config FILE ...`` in-process against the test's database, whose first
    table is the one the ``client`` and ``repository`` fixtures use."""
    config = tmp_path / "mnemo.toml"
    config.write_text(f'[[databases]]\nid = "{DB_ID}"\nurl = "{database_url}"\n'
                      f'tables = ["{table_name}", "{fresh_table}"]\n')
    monkeypatch.delenv("MNEMO_CONFIG", raising=False)

    def run(verb: str, *arguments: str) -> Result:
        capsys.readouterr()
        code = run_mnemo([verb, "--config", str(config), *arguments])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in records), encoding="utf-8")
    return path


def all_memories(client, **params) -> list[dict]:
    """Every memory of the table, read page by page through the API."""
    items, page = [], 1
    while True:
        body = client.get("/memories", params={"limit": 500, "page": page, "sort_by": "created_at",
                                               "sort_order": "asc", **params}).json()
        items += body["data"]
        if page >= body["meta"]["total_pages"]:
            return items
        page += 1


def all_stats(client) -> dict[str, tuple[int, str]]:
    stats, page = {}, 1
    while True:
        body = client.get("/user_memory_stats", params={"limit": 100, "page": page}).json()
        stats.update({s["user_id"]: (s["total_memories"], s["last_memory_updated_at"]) for s in body["data"]})
        if page >= body["meta"]["total_pages"]:
            return stats
        page += 1


def varied_memories():
    """Memories that exercise every part of the format: owners or none, unicode, topic order,
    timestamps with and without microseconds."""
    micro = datetime(2025, 3, 4, 5, 6, 7, 123, tzinfo=UTC)
    return [
        stored_memory("b-2", user_id="ü-ser", memory="Café ☕ at 日本 \"quoted\"\nnewline",
                      topics=["z", "a", "préférences"], agent_id="agent-1", team_id="team-1"),
        stored_memory("a-1", user_id=None, memory="nobody's", minutes=3, created_minutes=1),
        stored_memory("c-3", user_id="u2", memory="x" * 5000, topics=[f"t{i}" for i in range(50)]),
        Memory("d-4", "with micro", [], "u2", None, None, micro, micro + timedelta(seconds=1)),
    ]


# -- export ------------------------------------------------------------------------------------


def test_export_writes_one_object_per_line_with_exactly_the_documented_keys_in_memory_id_order(
        mnemo, repository, tmp_path):
    repository.insert(varied_memories())
    assert mnemo("export", str(tmp_path / "out.jsonl")).code == 0
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [list(r) for r in records] == [KEYS] * 4
    assert [r["memory_id"] for r in records] == ["a-1", "b-2", "c-3", "d-4"]
    assert records[1] == {
        "memory_id": "b-2", "memory": "Café ☕ at 日本 \"quoted\"\nnewline", "user_id": "ü-ser",
        "agent_id": "agent-1", "team_id": "team-1", "topics": ["z", "a", "préférences"],
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
    }
    assert (records[0]["user_id"], records[0]["topics"]) == (None, [])
    assert (records[0]["created_at"], records[0]["updated_at"]) == ("2025-01-01T00:01:00Z",
                                                                    "2025-01-01T00:03:00Z")
    # Microseconds only when there are some.
    assert (records[3]["created_at"], records[3]["updated_at"]) == ("2025-03-04T05:06:07.000123Z",
                                                                    "2025-03-04T05:06:08.000123Z")


def test_export_reads_the_table_a_batch_at_a_time_by_memory_id(mnemo, repository, tmp_path, monkeypatch):
    ids = [f"m{i:02}" for i in range(10)]
    repository.insert([stored_memory(i) for i in random.Random(1).sample(ids, len(ids))])
    monkeypatch.setattr(transfer, "BATCH_SIZE", 3)
    calls = []
    scan = MemoryRepository.scan

    def spy(self, after, limit):
        page = scan(self, after, limit)
        calls.append((after, limit, [m.memory_id for m in page]))
        return page

    monkeypatch.setattr(MemoryRepository, "scan", spy)
    assert mnemo("export", str(tmp_path / "out.jsonl")).code == 0
    assert calls == [(None, 3, ids[0:3]), ("m02", 3, ids[3:6]), ("m05", 3, ids[6:9]), ("m08", 3, ids[9:])]
    exported = [json.loads(line)["memory_id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert exported == ids


def test_export_then_import_into_a_fresh_table_gives_identical_lines(mnemo, repository, fresh_table,
                                                                      tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "BATCH_SIZE", 2)
    repository.insert(varied_memories() + [stored_memory(f"n{i}", user_id=f"u{i % 3}", minutes=i,
                                                         topics=[f"t{i % 4}"]) for i in range(7)])
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert mnemo("export", str(first)).code == 0
    imported = mnemo("import", str(first), "--table", fresh_table)
    assert imported.code == 0, imported.err
    assert mnemo("export", str(second), "--table", fresh_table).code == 0
    assert len(first.read_bytes().splitlines()) == 11
    assert second.read_bytes() == first.read_bytes()


def test_export_and_import_use_standard_output_and_input_for_a_dash(mnemo, repository, fresh_table,
                                                                     monkeypatch):
    repository.insert(varied_memories())
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stdout)
    exported = mnemo("export", "-")
    assert exported.code == 0
    assert "exported 4 memories in" in exported.err
    data = stdout.buffer.getvalue()
    assert [json.loads(line)["memory_id"] for line in data.splitlines()] == ["a-1", "b-2", "c-3", "d-4"]

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert mnemo("import", "-", "--table", fresh_table).code == 0
    again = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", again)
    assert mnemo("export", "-", "--table", fresh_table).code == 0
    assert again.buffer.getvalue() == data


def test_export_to_a_reader_that_went_away_exits_1_quietly(mnemo, repository, monkeypatch):
    # `mnemo export - | head`: once head has read enough, the rest is not worth a message.
    repository.insert(varied_memories())

    class GoneReader(io.BytesIO):
        def write(self, data):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(GoneReader(), encoding="utf-8"))
    result = mnemo("export", "-")
    assert (result.code, result.err) == (EXIT_FAILURE, "")


def test_a_summary_counts_one_memory_as_one_memory(mnemo, repository, tmp_path):
    repository.insert([stored_memory("only")])
    result = mnemo("export", str(tmp_path / "out.jsonl"))
    assert result.code == 0
    assert result.err.startswith("exported 1 memory in ")


# -- import ------------------------------------------------------------------------------------


def dataset_lines(n: int) -> list[str]:
    """The benchmark's dataset; when the benchmark is not beside this checkout, lines like it."""
    if DATASET.is_file():
        output = subprocess.run([sys.executable, str(DATASET), str(n)], capture_output=True, check=True)
        return output.stdout.decode().splitlines()
    rnd = random.Random(7)
    topics = [f"topic_{i}" for i in range(50)] + ["préférences", "café", "日本", "a,b", "emoji🙂"] * 2
    start = datetime(2025, 1, 1, tzinfo=UTC)
    lines = []
    for i in range(n):
        created = start + timedelta(seconds=i * 30 + rnd.randrange(30))
        updated = created + timedelta(seconds=rnd.randrange(86400)) if rnd.random() < 0.3 else created
        lines.append(json.dumps({
            "memory_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "updated_at": updated.isoformat().replace("+00:00", "Z"),
            "memory": f"Memory {i}: the user mentions {rnd.choice(['tea', 'jazz', 'chess'])}.",
            "user_id": f"user-{rnd.randrange(max(1, n // 100))}",
            "agent_id": f"agent-{rnd.randrange(5)}" if rnd.random() < 0.5 else None,
            "topics": rnd.sample(topics, rnd.randint(0, 4)),
        }, ensure_ascii=False))
    return lines


def test_the_benchmark_dataset_imports_and_reads_back_the_same_through_the_api(mnemo, client, tmp_path):
    lines = dataset_lines(2000)
    path = tmp_path / "dataset.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = mnemo("import", str(path))
    assert result.code == 0, result.err
    assert SUMMARY.fullmatch(result.err.strip().splitlines()[-1]).group(1) == "2000"

    given = {r["memory_id"]: r for r in map(json.loads, lines)}
    stored = {m["memory_id"]: m for m in all_memories(client)}
    assert stored.keys() == given.keys()
    for memory_id, record in given.items():
        # Topics are a set that keeps the given order: a repeated topic is stored once.
        expected = {**record, "team_id": None, "topics": list(dict.fromkeys(record["topics"]))}
        assert stored[memory_id] == expected
    assert client.get("/memory_topics").json() == sorted({t for r in given.values() for t in r["topics"]})
    expected_stats: dict[str, tuple[int, str]] = {}
    for record in given.values():
        count, latest = expected_stats.get(record["user_id"], (0, ""))
        expected_stats[record["user_id"]] = (count + 1, max(latest, record["updated_at"]))
    assert all_stats(client) == expected_stats


def test_an_import_leaves_the_planner_statistics_and_postgresql_visibility_up_to_date(
        mnemo, catalog, table_name, tmp_path):
    path = tmp_path / "dataset.jsonl"
    path.write_text("\n".join(dataset_lines(300)) + "\n", encoding="utf-8")
    assert mnemo("import", str(path)).code == 0
    database = catalog.databases[DB_ID]
    with database.engine.connect() as conn:
        if database.engine.dialect.name == "postgresql":
            # VACUUM marks the pages all-visible, so counts can be answered from an index alone.
            visible = dict(conn.execute(sa.text(
                "SELECT relname, relallvisible FROM pg_class WHERE relname IN (:m, :t, :s)"),
                {"m": table_name, "t": f"{table_name}_topics", "s": f"{table_name}_search"}).all())
            assert all(visible[name] > 0 for name in (table_name, f"{table_name}_topics",
                                                      f"{table_name}_search"))
        else:
            analysed = {row[0] for row in conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1")}
            assert {table_name, f"{table_name}_topics"} <= analysed


def test_missing_ids_and_timestamps_are_generated_and_missing_topics_and_owners_are_empty(
        mnemo, client, tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [
        {"memory": "no id, no times"},
        {"memory": "created only", "created_at": "2024-05-06T07:08:09.5+02:00", "user_id": "u1"},
        {"memory": "null topics", "topics": None, "memory_id": None, "updated_at": None},
        {"memory_id": "given", "memory": "updated only", "updated_at": "2024-01-01T00:00:00Z"},
    ])
    before = datetime.now(UTC)
    assert mnemo("import", str(path)).code == 0
    after = datetime.now(UTC)
    stored = {m["memory"]: m for m in all_memories(client)}
    for text in ("no id, no times", "null topics"):
        memory = stored[text]
        assert uuid.UUID(memory["memory_id"]).version == 4
        created = datetime.fromisoformat(memory["created_at"])
        assert before - timedelta(seconds=1) <= created <= after
        assert memory["updated_at"] == memory["created_at"]
        assert (memory["topics"], memory["user_id"], memory["agent_id"], memory["team_id"]) == (
            [], None, None, None)
    assert stored["no id, no times"]["memory_id"] != stored["null topics"]["memory_id"]
    created_only = stored["created only"]
    assert (created_only["created_at"], created_only["updated_at"]) == ("2024-05-06T05:08:09.500000Z",) * 2
    assert created_only["user_id"] == "u1"
    assert stored["updated only"]["memory_id"] == "given"
    assert stored["updated only"]["updated_at"] == "2024-01-01T00:00:00Z"


GOOD = [{"memory_id": f"good-{i}", "memory": f"good {i}", "user_id": "u1", "topics": [f"topic-{i}"]}
        for i in range(1, 7)]
BAD_LINES = {
    "not_json": ('{"memory": "unterminated', "is not valid JSON"),
    "not_an_object": ('["memory"]', "is not a JSON object"),
    "missing_memory": ({"user_id": "u1"}, "memory must be a non-empty string"),
    "empty_memory": ({"memory": ""}, "memory must be a non-empty string"),
    "memory_too_long": ({"memory": "x" * 5001}, "memory is 5001 characters long; at most 5000"),
    "nul_in_memory": ({"memory": "a\u0000b"}, "memory contains a NUL character"),
    "bad_timestamp": ({"memory": "m", "created_at": "2025-13-01T00:00:00Z"},
                      "created_at must be an RFC 3339"),
    "timestamp_without_zone": ({"memory": "m", "updated_at": "2025-01-01T00:00:00"},
                               "updated_at must be an RFC 3339"),
    "id_too_long": ({"memory": "m", "user_id": "u" * 256}, "user_id must be a string of at most 255"),
    "control_character_in_id": ({"memory": "m", "agent_id": "a\tb"}, "agent_id must be a string"),
    "topics_not_a_list": ({"memory": "m", "topics": "work"}, "topics must be a list"),
    "too_many_topics": ({"memory": "m", "topics": [str(i) for i in range(51)]}, "topics has 51 items"),
    "bad_topic": ({"memory": "m", "topics": [1]}, "each topic must be a string"),
    "unknown_key": ({"memory": "m", "topic": ["work"]}, "has unknown keys: 'topic'"),
    "id_already_stored": ({"memory_id": "good-1", "memory": "again"},
                          "a memory with memory_id 'good-1' already exists"),
    "id_twice_in_one_batch": ({"memory_id": "good-4", "memory": "again"},
                              "memory_id 'good-4' is also on line 4"),
}


@pytest.mark.parametrize("kind", BAD_LINES)
def test_a_bad_line_stops_the_import_naming_it_and_nothing_of_its_batch_is_written(
        kind, mnemo, repository, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "BATCH_SIZE", 3)
    bad, problem = BAD_LINES[kind]
    # Lines 1-3 are one batch, written; line 4 shares its batch with the bad line 5.
    path = write_lines(tmp_path / "in.jsonl", [*GOOD[:4], bad, GOOD[5]])
    result = mnemo("import", str(path))
    assert result.code == EXIT_USAGE
    assert f"line 5: {problem}" in result.err
    assert "3 memories were imported before line 4" in result.err
    assert [m.memory_id for m in repository.scan(None, 100)] == ["good-1", "good-2", "good-3"]
    assert repository.topics() == ["topic-1", "topic-2", "topic-3"]
    assert [(s.user_id, s.total_memories) for s in repository.user_stats(limit=10, page=1).items] == [
        ("u1", 3)]


def test_a_byte_order_mark_and_blank_lines_are_not_memories(mnemo, repository, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + b'{"memory_id": "m1", "memory": "one"}\r\n\r\n  \n'
                     b'{"memory_id": "m2", "memory": "two"}')
    result = mnemo("import", str(path))
    assert result.code == 0, result.err
    assert [m.memory for m in repository.scan(None, 10)] == ["one", "two"]


def test_a_bad_line_in_the_first_batch_imports_nothing(mnemo, repository, tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [GOOD[0], "", {"memory": 5}])
    result = mnemo("import", str(path))
    assert result.code == EXIT_USAGE
    assert "line 3: memory must be a non-empty string; nothing was imported" in result.err
    assert repository.scan(None, 10) == []


def test_import_prints_a_summary_always_and_progress_only_on_a_terminal(mnemo, tmp_path, monkeypatch,
                                                                         fresh_table):
    monkeypatch.setattr(transfer, "BATCH_SIZE", 2)
    path = write_lines(tmp_path / "in.jsonl", [{"memory": f"m{i}"} for i in range(5)])
    plain = mnemo("import", str(path))
    assert plain.code == 0
    assert "\r" not in plain.err
    assert SUMMARY.fullmatch(plain.err.strip()).group(1) == "5"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert mnemo("import", str(path), "--table", fresh_table).code == 0
    drawn = terminal.getvalue()
    # Redrawn in place after each batch: the share of the file read, and the memories stored.
    assert re.search(r"\r[^\r]*importing +\[#+-+\] +40% +2 memories", drawn), drawn
    assert re.search(r"\r[^\r]*importing +\[#+-+\] +80% +4 memories", drawn), drawn
    assert SUMMARY.fullmatch(drawn.splitlines()[-1]).group(1) == "5"

    exported = Terminal()
    monkeypatch.setattr(sys, "stderr", exported)
    assert mnemo("export", str(tmp_path / "out.jsonl"), "--table", fresh_table).code == 0
    # How many there are to export is not known beforehand: a count, without a bar.
    assert re.search(r"\r[^\r]*exporting +4 memories", exported.getvalue()), exported.getvalue()
    assert exported.getvalue().splitlines()[-1].startswith("exported 5 memories in ")


# -- settings and failures -----------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["export", "import", "import-agno"])
def test_every_verb_has_help(verb, capsys):
    assert run_mnemo([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: mnemo {verb}")
    assert "--config" in out and "--db-id" in out


def test_an_unknown_table_or_database_is_a_usage_error(mnemo, tmp_path):
    unknown_table = mnemo("export", "-", "--table", "nope")
    assert unknown_table.code == EXIT_USAGE
    assert "has table 'nope'" in unknown_table.err
    unknown_database = mnemo("import", str(write_lines(tmp_path / "in.jsonl", [])), "--db-id", "other")
    assert unknown_database.code == EXIT_USAGE
    assert "no database with id 'other'" in unknown_database.err


def test_every_message_after_mnemo_starts_lower_case(mnemo):
    # Storage words this one as a sentence, for the API's detail.
    result = mnemo("export", "-", "--table", "nope")
    assert result.err == f"mnemo: no database with id '{DB_ID}' has table 'nope'\n"


def test_a_file_that_cannot_be_read_is_a_usage_error(mnemo, tmp_path):
    result = mnemo("import", str(tmp_path / "missing.jsonl"))
    assert result.code == EXIT_USAGE
    assert "cannot open" in result.err and "missing.jsonl" in result.err


def test_the_database_url_comes_from_the_environment_and_an_unreachable_one_exits_1(monkeypatch, tmp_path,
                                                                                      capsys):
    monkeypatch.delenv("MNEMO_CONFIG", raising=False)
    monkeypatch.setenv("MNEMO_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("MNEMO_TABLE", "from_env")
    path = write_lines(tmp_path / "in.jsonl", [{"memory_id": "e1", "memory": "from the environment"}])
    assert run_mnemo(["import", str(path)]) == 0
    assert run_mnemo(["export", str(tmp_path / "out.jsonl")]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["memory_id"] == "e1"
    capsys.readouterr()
    monkeypatch.setenv("MNEMO_DATABASE_URL", "sqlite:////nonexistent-directory/memories.db")
    assert run_mnemo(["import", str(path)]) == EXIT_FAILURE
    assert "cannot use the database" in capsys.readouterr().err


# -- import-agno ---------------------------------------------------------------------------------

EPOCH = 1_700_000_000


@pytest.fixture(params=["agno-sqlite", pytest.param("agno-postgresql", marks=pytest.mark.postgres)])
def agno_db(request, tmp_path):
    """An empty Agno database made by Agno's own SqliteDb or PostgresDb: (db, its URL, the
    import-agno arguments that find its memory table)."""
    if request.param == "agno-sqlite":
        from agno.db.sqlite import SqliteDb

        path = tmp_path / "agno.db"
        db = SqliteDb(db_file=str(path))
        yield db, f"sqlite:///{path}", []
        db.db_engine.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    from agno.db.postgres import PostgresDb

    schema = f"agno_{uuid.uuid4().hex[:12]}"
    url = sa.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    db = PostgresDb(db_url=url, db_schema=schema, memory_table="agno_memories")
    yield db, url, ["--schema", schema]
    db.db_engine.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


def fill_agno(db) -> sa.Table:
    """A few memories written by Agno itself; one with no updated_at, as older rows may have."""
    from agno.db.schemas import UserMemory

    db.upsert_user_memory(UserMemory(memory="Prefers café ☕ and 日本 trips", memory_id="m1",
                                     topics=["food", "日本"], user_id="alice", agent_id="agent-1",
                                     team_id="team-1", created_at=EPOCH))
    db.upsert_user_memory(UserMemory(memory={"kind": "profile", "likes": ["jazz", 2]}, memory_id="m2",
                                     created_at=EPOCH + 100))
    db.upsert_user_memory(UserMemory(memory="Works nights", memory_id="m3", user_id="alice",
                                     created_at=EPOCH + 200))
    # Agno's update: new text, updated_at set to now.
    db.upsert_user_memory(UserMemory(memory="Works days now", memory_id="m3", user_id="alice",
                                      topics=["work"], created_at=EPOCH + 200))
    db.upsert_user_memory(UserMemory(memory="Has a dog", memory_id="m4", user_id="bob",
                                     topics=None, created_at=EPOCH + 300))
    table = db._get_table(table_type="memories")
    with db.db_engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.memory_id == "m4").values(updated_at=None))
    return table


def instant(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def local_time_not_utc(monkeypatch):
    """A local time zone far from UTC, so that a naive epoch conversion would show."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_import_agno_copies_an_agno_databases_memories(agno_db, mnemo, client, local_time_not_utc):
    db, url, arguments = agno_db
    table = fill_agno(db)
    with db.db_engine.connect() as conn:
        m3_updated = conn.execute(sa.select(table.c.updated_at).where(table.c.memory_id == "m3")).scalar_one()
    assert m3_updated >= EPOCH + 200

    result = mnemo("import-agno", "--from", url, *arguments)
    assert result.code == 0, result.err
    assert SUMMARY.fullmatch(result.err.strip().splitlines()[-1]).group(1) == "4"

    stored = {m["memory_id"]: m for m in all_memories(client)}
    assert stored == {
        "m1": {"memory_id": "m1", "memory": "Prefers café ☕ and 日本 trips", "topics": ["food", "日本"],
               "user_id": "alice", "agent_id": "agent-1", "team_id": "team-1",
               "created_at": instant(EPOCH), "updated_at": instant(EPOCH)},
        # Not text in Agno: its compact JSON.
        "m2": {"memory_id": "m2", "memory": '{"kind":"profile","likes":["jazz",2]}', "topics": [],
               "user_id": None, "agent_id": None, "team_id": None,
               "created_at": instant(EPOCH + 100), "updated_at": instant(EPOCH + 100)},
        "m3": {"memory_id": "m3", "memory": "Works days now", "topics": ["work"], "user_id": "alice",
               "agent_id": None, "team_id": None,
               "created_at": instant(EPOCH + 200), "updated_at": instant(m3_updated)},
        "m4": {"memory_id": "m4", "memory": "Has a dog", "topics": [], "user_id": "bob", "agent_id": None,
               "team_id": None, "created_at": instant(EPOCH + 300), "updated_at": instant(EPOCH + 300)},
    }
    assert client.get("/memory_topics").json() == ["food", "work", "日本"]
    assert all_stats(client) == {"alice": (2, instant(m3_updated)), "bob": (1, instant(EPOCH + 300))}


def test_import_agno_never_writes_to_the_agno_database(agno_db, mnemo, tmp_path):
    db, url, arguments = agno_db
    fill_agno(db)
    db.db_engine.dispose()
    if url.startswith("sqlite"):
        agno_file = tmp_path / "agno.db"
        before = hashlib.sha256(agno_file.read_bytes()).hexdigest()
    assert mnemo("import-agno", "--from", url, *arguments).code == 0
    engine = read_only_engine(url)
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="read-only|readonly"):
        conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
    engine.dispose()
    if url.startswith("sqlite"):
        assert hashlib.sha256(agno_file.read_bytes()).hexdigest() == before


def test_import_agno_copies_in_batches_and_refuses_ids_already_stored(agno_db, mnemo, repository,
                                                                       monkeypatch):
    from agno.db.schemas import UserMemory

    db, url, arguments = agno_db
    for i in range(7):
        db.upsert_user_memory(UserMemory(memory=f"memory {i}", memory_id=f"m{i}", user_id="u",
                                         created_at=EPOCH + i))
    monkeypatch.setattr(transfer, "BATCH_SIZE", 3)
    inserted = []
    insert = MemoryRepository.insert

    def spy(self, memories):
        inserted.append([m.memory_id for m in memories])
        return insert(self, memories)

    monkeypatch.setattr(MemoryRepository, "insert", spy)
    assert mnemo("import-agno", "--from", url, *arguments).code == 0
    assert inserted == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]
    again = mnemo("import-agno", "--from", url, *arguments)
    assert again.code == EXIT_USAGE
    assert "a memory with memory_id 'm0' already exists; nothing was imported" in again.err
    assert len(repository.scan(None, 100)) == 7


def test_import_agno_refuses_a_memory_mnemo_could_not_store_naming_it(agno_db, mnemo, repository):
    from agno.db.schemas import UserMemory

    db, url, arguments = agno_db
    db.upsert_user_memory(UserMemory(memory="fine", memory_id="a-fine", created_at=EPOCH))
    db.upsert_user_memory(UserMemory(memory="x" * 5001, memory_id="b-long", created_at=EPOCH))
    result = mnemo("import-agno", "--from", url, *arguments)
    assert result.code == EXIT_USAGE
    assert "memory 'b-long' of " in result.err and "at most 5000 are allowed" in result.err
    assert repository.scan(None, 10) == []


def test_import_agno_names_a_missing_table_and_a_missing_file(mnemo, tmp_path):
    from agno.db.schemas import UserMemory
    from agno.db.sqlite import SqliteDb

    path = tmp_path / "agno.db"
    db = SqliteDb(db_file=str(path))
    db.upsert_user_memory(UserMemory(memory="m"))
    db.db_engine.dispose()
    no_table = mnemo("import-agno", "--from", f"sqlite:///{path}", "--table", "other_memories")
    assert no_table.code == EXIT_USAGE
    assert "has no table other_memories" in no_table.err
    no_file = mnemo("import-agno", "--from", f"sqlite:///{tmp_path}/absent.db")
    assert no_file.code == EXIT_USAGE
    assert "no such file" in no_file.err
    assert not (tmp_path / "absent.db").exists()


def test_an_agno_database_that_cannot_be_reached_exits_1(mnemo):
    # Agno apps often name psycopg2, which Mnemo does not ship: psycopg 3 reads it just as well.
    result = mnemo("import-agno", "--from", "postgresql+psycopg2://agno:secret@127.0.0.1:1/agno")
    assert result.code == EXIT_FAILURE
    assert "cannot read the Agno database postgresql+psycopg2://agno:***@127.0.0.1:1/agno" in result.err
    assert "secret" not in result.err


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/agno", "sqlite://"])
def test_an_agno_url_import_agno_cannot_read_is_a_usage_error(url, mnemo):
    result = mnemo("import-agno", "--from", url)
    assert result.code == EXIT_USAGE
    assert "sqlite:///PATH" in result.err


@pytest.mark.postgres
def test_import_agno_looks_in_agnos_schema_ai_on_postgresql_by_default(mnemo):
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    table = f"absent_{uuid.uuid4().hex[:12]}"
    result = mnemo("import-agno", "--from", POSTGRES_URL, "--table", table)
    assert result.code == EXIT_USAGE
    assert f"has no table ai.{table}" in result.err


def test_an_import_leaves_the_query_planner_statistics_of_the_loaded_tables(mnemo, repository, tmp_path):
    # Stale statistics after a bulk load make PostgreSQL plan for an empty table.
    path = write_lines(tmp_path / "in.jsonl", [{"memory": f"m{i}", "user_id": "u", "topics": ["t"]}
                                               for i in range(50)])
    assert mnemo("import", str(path)).code == 0
    tables = repository.tables
    with repository._engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            analyzed = conn.execute(sa.text(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
                "AND relname IN (:m, :t, :s)"), {"m": tables.memories.name, "t": tables.topics.name,
                                                 "s": tables.user_stats.name}).scalars().all()
        else:
            analyzed = conn.execute(sa.text("SELECT DISTINCT tbl FROM sqlite_stat1")).scalars().all()
    assert {tables.memories.name, tables.topics.name, tables.user_stats.name} <= set(analyzed)
