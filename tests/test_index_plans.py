"""Filters answer exactly what their definition says, whichever index serves them.

A list with topic or search filters is found either by walking the sort order's index and
testing each memory, or by starting from the topic or search index and sorting what it finds;
its total comes from the smallest index that knows it. Whatever the plan, the answer must be
that of the plain definition: every listed topic carried, the search text a case-insensitive
(Unicode case-folded) substring. Generated data makes matches both rare and common, so both
plans and every way of counting run.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import MemoryQuery

from .conftest import stored_memory

# Few characters, so that generated needles often match: with case pairs, a letter whose case
# folding is longer (ß folds to ss), an accented letter, a CJK character and a space.
ALPHABET = "aAsSßé日 "
TOPICS = ["a", "b", "c", "日本"]

memories = st.lists(
    st.tuples(
        st.text(ALPHABET, min_size=1, max_size=12),
        st.lists(st.sampled_from(TOPICS), max_size=3, unique=True),
        st.sampled_from(["u1", "u2"]),
    ),
    min_size=1,
    max_size=30,
)
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def store(repository, generated):
    stored = [stored_memory(f"m{i:02}", memory=text, topics=topics, user_id=user, minutes=i % 7,
                            created_minutes=i)
              for i, (text, topics, user) in enumerate(generated)]
    repository.insert(stored)
    return stored


def expected_page(matching, page: int, limit: int):
    ordered = sorted(matching, key=lambda m: (m.updated_at, m.memory_id), reverse=True)
    return [m.memory_id for m in ordered[(page - 1) * limit:page * limit]], len(matching)


def listed(repository, query: MemoryQuery):
    result = repository.list(query)
    return [m.memory_id for m in result.items], result.total_count


@PROPERTY
@given(generated=memories, needle=st.text(ALPHABET, min_size=1, max_size=4),
       user=st.sampled_from([None, "u1"]), page=st.integers(1, 4))
def test_search_finds_exactly_the_case_insensitive_substring_matches(repository, generated, needle,
                                                                     user, page):
    stored = store(repository, generated)
    try:
        matching = [m for m in stored if needle.casefold() in m.memory.casefold()
                    and user in (None, m.user_id)]
        query = MemoryQuery(search_content=needle, user_id=user, limit=3, page=page)
        assert listed(repository, query) == expected_page(matching, page, 3)
    finally:
        repository.delete([m.memory_id for m in stored])


@PROPERTY
@given(generated=memories, wanted=st.lists(st.sampled_from(TOPICS), min_size=1, max_size=2, unique=True),
       user=st.sampled_from([None, "u1"]), page=st.integers(1, 4))
def test_topic_filters_find_exactly_the_memories_carrying_every_topic(repository, generated, wanted,
                                                                       user, page):
    stored = store(repository, generated)
    try:
        matching = [m for m in stored if set(wanted) <= set(m.topics) and user in (None, m.user_id)]
        query = MemoryQuery(topics=wanted, user_id=user, limit=3, page=page)
        assert listed(repository, query) == expected_page(matching, page, 3)
    finally:
        repository.delete([m.memory_id for m in stored])


@PROPERTY
@given(generated=memories, topic=st.sampled_from(TOPICS), needle=st.text(ALPHABET, min_size=1, max_size=3))
def test_topic_and_search_filters_combine_with_and(repository, generated, topic, needle):
    stored = store(repository, generated)
    try:
        matching = [m for m in stored if topic in m.topics and needle.casefold() in m.memory.casefold()]
        query = MemoryQuery(topics=[topic], search_content=needle, limit=50)
        assert listed(repository, query) == expected_page(matching, 1, 50)
    finally:
        repository.delete([m.memory_id for m in stored])
