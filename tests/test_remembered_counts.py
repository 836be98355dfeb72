"""Totals that cost a count of many index entries are remembered between writes, and never
outlive one: every write, in any process, ends them (storage/counts.py, RememberedCounts)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import Database, MemoryExists, MemoryQuery

from .conftest import DB_ID, stored_memory


@pytest.fixture
def other_process(database_url, table_name, catalog):
    """A second repository on the same tables through its own engine and pool, as another
    worker process has: it shares nothing with the first but the database."""
    database = Database.connect(DB_ID, database_url, [table_name])
    yield database.repositories[table_name]
    database.dispose()


def is_count(statement: str, repository) -> bool:
    """A count of the memories that match, read from the family's tables (not the table's
    total, a sum of the per-user summaries)."""
    return (statement.lstrip().lower().startswith("select count(*)")
            and repository.tables.name in statement)


def needle_of(parameters) -> str | None:
    """The search a statement was run for, from its LIKE pattern (``%needle%``) or its FTS5
    phrase (``"needle"``); None if none."""
    values = parameters.values() if isinstance(parameters, dict) else parameters
    for value in values:
        if isinstance(value, str) and len(value) > 1 and value[0] == value[-1] and value[0] in '%"':
            return value[1:-1]
    return None


@pytest.fixture
def counted(repository):
    """The searches the repository actually counted in the database (rather than remembered),
    seen in the statements it runs: None for a count without a search."""
    questions = []

    def watch(_conn, _cursor, statement, parameters, *_args):
        if is_count(statement, repository):
            questions.append(needle_of(parameters))

    sa.event.listen(repository._engine, "before_cursor_execute", watch)
    yield questions
    sa.event.remove(repository._engine, "before_cursor_execute", watch)


def search(repository, needle: str, **filters) -> int:
    return repository.list(MemoryQuery(search_content=needle, **filters)).total_count


def test_a_search_asked_again_before_any_write_is_not_counted_again(repository, counted):
    repository.insert([stored_memory(f"m{i}", memory=f"drinks tea, cup {i}") for i in range(5)])
    assert search(repository, "tea") == 5
    assert search(repository, "TEA") == 5  # the same question once folded
    assert search(repository, "tea", page=2, limit=2) == 5
    assert counted == ["tea"]


def test_different_questions_are_remembered_apart(repository, counted):
    repository.insert([stored_memory("a", memory="tea", user_id="u1"),
                       stored_memory("b", memory="tea", user_id="u2", topics=["x"])])
    assert search(repository, "tea") == 2
    assert search(repository, "tea", user_id="u1") == 1
    assert search(repository, "tea", topics=["x"]) == 1
    assert repository.list(MemoryQuery(topics=["x"])).total_count == 1
    assert search(repository, "coffee") == 0
    assert len(counted) == 5


@pytest.mark.parametrize("change", ["insert", "create", "update", "delete", "erase_user"])
def test_every_kind_of_write_in_another_process_ends_the_remembered_totals(
        repository, other_process, change):
    repository.insert([stored_memory("m1", memory="tea", user_id="u1"),
                       stored_memory("m2", memory="tea", user_id="u2")])
    assert search(repository, "tea") == 2
    assert repository.list(MemoryQuery()).total_count == 2
    if change == "insert":
        other_process.insert([stored_memory("m3", memory="more tea")])
        expected = 3
    elif change == "create":
        other_process.create(memory="green tea", user_id="u3")
        expected = 3
    elif change == "update":
        other_process.update("m1", user_id="u1", memory="coffee", topics=None)
        expected = 1
    elif change == "delete":
        other_process.delete(["m1"])
        expected = 1
    else:
        other_process.erase_user("u2")
        expected = 1
    assert search(repository, "tea") == expected
    assert repository.list(MemoryQuery()).total_count == (2 if change == "update" else expected)


def test_a_write_that_commits_while_a_total_is_counted_is_seen_by_the_next_read(
        repository, other_process):
    # The change counter is read before counting: a write that lands after the count (but
    # before the count is remembered) must leave the remembered count behind. Counting first
    # and reading the counter after would remember 1 under the write's state, and answer 1
    # (on PostgreSQL, where each statement of a read sees the latest commits; SQLite's read
    # transaction keeps one snapshot, which holds either way).
    repository.insert([stored_memory("m1", memory="tea")])
    written = []

    def write_after_the_count(_conn, _cursor, statement, *_args):
        if is_count(statement, repository) and not written:
            written.append(True)
            other_process.insert([stored_memory("m2", memory="tea too")])

    sa.event.listen(repository._engine, "after_cursor_execute", write_after_the_count)
    try:
        assert search(repository, "tea") == 1
    finally:
        sa.event.remove(repository._engine, "after_cursor_execute", write_after_the_count)
    assert written
    assert search(repository, "tea") == 2


def test_a_write_that_fails_changes_nothing_and_the_totals_stay_right(repository, other_process):
    repository.insert([stored_memory("m1", memory="tea")])
    assert search(repository, "tea") == 1
    with pytest.raises(MemoryExists):
        other_process.insert_new([stored_memory("m2", memory="tea"), stored_memory("m1", memory="tea")])
    assert search(repository, "tea") == 1
    assert repository.list(MemoryQuery()).total_count == 1


def test_user_statistics_totals_follow_writes(repository, other_process):
    repository.insert([stored_memory("m1", user_id="u1")])
    assert repository.user_stats(limit=10, page=1).total_count == 1
    other_process.insert([stored_memory("m2", user_id="u2")])
    assert repository.user_stats(limit=10, page=1).total_count == 2
    other_process.erase_user("u1")
    assert repository.user_stats(limit=10, page=1).total_count == 1


def test_the_remembered_totals_are_bounded(repository, counted, monkeypatch):
    monkeypatch.setattr(repository._counts, "_limit", 3)
    repository.insert([stored_memory("m1", memory="abcdef")])
    for needle in ("abc", "bcd", "cde", "def"):
        assert search(repository, needle) == 1
    assert len(repository._counts) <= 3
    assert search(repository, "def") == 1
    assert counted == ["abc", "bcd", "cde", "def"]


def test_the_number_of_users_is_counted_once_between_writes(repository, other_process):
    repository.insert([stored_memory("m1", user_id="u1"), stored_memory("m2", user_id="u2")])
    counts = []

    def watch(conn, cursor, statement, *args):
        if "count(*)" in statement.lower() and "user_stats" in statement:
            counts.append(statement)

    sa.event.listen(repository._engine, "before_cursor_execute", watch)
    try:
        assert repository.user_stats(limit=1, page=1).total_count == 2
        assert repository.user_stats(limit=1, page=2).total_count == 2
        assert len(counts) == 1
        other_process.insert([stored_memory("m3", user_id="u3")])
        assert repository.user_stats(limit=1, page=1).total_count == 3
        assert len(counts) == 2
        # A page past the end still has its total.
        assert repository.user_stats(limit=1, page=9).total_count == 3
    finally:
        sa.event.remove(repository._engine, "before_cursor_execute", watch)
