"""Behaviour of GET /memories: filters, search, ordering and paging."""

from __future__ import annotations

import pytest

from .conftest import stored_memory


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["memory_id"] for m in response.json()["data"]]


def test_filters_combine_with_and(client, repository):
    repository.insert([
        stored_memory("m1", user_id="u1", agent_id="a1", team_id="t1", minutes=1),
        stored_memory("m2", user_id="u1", agent_id="a2", team_id="t1", minutes=2),
        stored_memory("m3", user_id="u2", agent_id="a1", team_id="t1", minutes=3),
    ])
    assert ids(client.get("/memories", params={"user_id": "u1"})) == ["m2", "m1"]
    assert ids(client.get("/memories", params={"agent_id": "a1"})) == ["m3", "m1"]
    assert ids(client.get("/memories", params={"team_id": "t1"})) == ["m3", "m2", "m1"]
    assert ids(client.get("/memories", params={"user_id": "u1", "agent_id": "a1"})) == ["m1"]


def test_identifier_filters_match_exactly(client, repository):
    repository.insert([stored_memory("m1", user_id="User-1"), stored_memory("m2", user_id="user-10")])
    assert ids(client.get("/memories", params={"user_id": "user-1"})) == []
    assert ids(client.get("/memories", params={"user_id": "User-1"})) == ["m1"]


def test_topic_filter_keeps_memories_carrying_every_listed_topic(client, repository):
    repository.insert([
        stored_memory("both", topics=["a", "b"], minutes=1),
        stored_memory("only-a", topics=["a"], minutes=2),
        stored_memory("none", topics=[], minutes=3),
    ])
    assert ids(client.get("/memories?topics=a")) == ["only-a", "both"]
    assert ids(client.get("/memories?topics=a&topics=b")) == ["both"]


def test_topics_are_accepted_comma_separated_repeated_or_both(client, repository):
    repository.insert([stored_memory("abc", topics=["a", "b", "c"]), stored_memory("ab", topics=["a", "b"])])
    assert ids(client.get("/memories?topics=a,b,c")) == ["abc"]
    assert ids(client.get("/memories?topics=a&topics=b&topics=c")) == ["abc"]
    assert ids(client.get("/memories?topics=a,b&topics=c")) == ["abc"]


def test_a_percent_encoded_comma_splits_topics_like_a_plain_one(client, repository):
    repository.insert([stored_memory("comma", topics=["a,b"], minutes=1),
                       stored_memory("split", topics=["a", "b"], minutes=2)])
    assert ids(client.get("/memories?topics=a%2Cb")) == ["split"]
    assert ids(client.get("/memories?topics=a%2cb")) == ["split"]
    assert ids(client.get("/memories?topics=a,b")) == ["split"]
    # What httpx, requests and urllib send for topics=["a,b"]: a topic with a comma in it
    # cannot be a filter.
    assert ids(client.get("/memories", params={"topics": ["a,b"]})) == ["split"]


def test_split_topics_are_percent_decoded_before_they_are_matched(client, repository):
    repository.insert([stored_memory("decoded", topics=["café", "a b", "x+y", "c"], minutes=1),
                       stored_memory("some", topics=["café", "c"], minutes=2)])
    assert ids(client.get("/memories?topics=caf%C3%A9%2Ca+b,x%2By&topics=c")) == ["decoded"]
    assert ids(client.get("/memories?top%69cs=caf%C3%A9%2Cc")) == ["some", "decoded"]


def test_only_array_parameters_are_split_on_an_encoded_comma(client, repository):
    repository.insert([stored_memory("m1", user_id="a,b", topics=["a", "b"]),
                       stored_memory("m2", user_id="a", topics=["a", "b"])])
    assert ids(client.get("/memories?user_id=a%2Cb&topics=a%2Cb")) == ["m1"]


@pytest.mark.parametrize("topic", ["café", "日本", "emoji🙂", "100%", "under_score", "naïve", "a b"])
def test_any_unicode_topic_matches_exactly(client, repository, topic):
    repository.insert([stored_memory("exact", topics=[topic]),
                       stored_memory("near", topics=[topic.upper() + "x"])])
    assert ids(client.get("/memories", params={"topics": [topic]})) == ["exact"]


def test_an_empty_topics_parameter_filters_nothing(client, repository):
    repository.insert([stored_memory("m1", topics=["a"])])
    assert ids(client.get("/memories?topics=")) == ["m1"]


def test_search_content_is_a_case_insensitive_substring_match(client, repository):
    repository.insert([
        stored_memory("cafe", memory="Loves the Café on Main Street", minutes=1),
        stored_memory("strasse", memory="Lives on the Hauptstraße", minutes=2),
        stored_memory("other", memory="Drinks tea", minutes=3),
    ])
    assert ids(client.get("/memories", params={"search_content": "CAFÉ"})) == ["cafe"]
    assert ids(client.get("/memories", params={"search_content": "main st"})) == ["cafe"]
    assert ids(client.get("/memories", params={"search_content": "HAUPTSTRASSE"})) == ["strasse"]
    assert ids(client.get("/memories", params={"search_content": "e"})) == ["other", "strasse", "cafe"]


@pytest.mark.parametrize("needle", ["100%", "a_b", "back\\slash"])
def test_search_takes_percent_underscore_and_backslash_literally(client, repository, needle):
    repository.insert([
        stored_memory("literal", memory=f"has {needle} inside", minutes=1),
        stored_memory("lookalike", memory="has 1000 and aXb and backslash inside", minutes=2),
    ])
    assert ids(client.get("/memories", params={"search_content": needle})) == ["literal"]


def test_empty_search_content_filters_nothing(client, repository):
    repository.insert([stored_memory("m1")])
    assert ids(client.get("/memories", params={"search_content": ""})) == ["m1"]


def test_default_order_is_most_recently_updated_first(client, repository):
    repository.insert([stored_memory(f"m{i}", minutes=i) for i in (2, 0, 1)])
    assert ids(client.get("/memories")) == ["m2", "m1", "m0"]


def test_sort_by_created_at_ascending(client, repository):
    repository.insert([
        stored_memory("new", minutes=0, created_minutes=5),
        stored_memory("old", minutes=9, created_minutes=1),
    ])
    oldest_first = {"sort_by": "created_at", "sort_order": "asc"}
    assert ids(client.get("/memories", params=oldest_first)) == ["old", "new"]


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_ordering_is_total_so_pages_never_repeat_or_skip(client, repository, sort_order):
    # Every memory has the same timestamps: only the memory_id tie-break orders them.
    repository.insert([stored_memory(f"m{i:02d}") for i in range(23)])
    seen = []
    for page in (1, 2, 3):
        seen += ids(client.get("/memories", params={"limit": 10, "page": page, "sort_order": sort_order}))
    assert sorted(seen) == [f"m{i:02d}" for i in range(23)]
    assert seen == sorted(seen, reverse=sort_order == "desc")


def test_meta_total_count_and_total_pages_are_exact_on_every_page(client, repository):
    repository.insert([stored_memory(f"m{i}", user_id="u1") for i in range(7)]
                      + [stored_memory("x", user_id="u2")])
    for page in (1, 2, 3, 4, 99):
        meta = client.get("/memories", params={"user_id": "u1", "limit": 3, "page": page}).json()["meta"]
        assert (meta["total_count"], meta["total_pages"], meta["page"], meta["limit"]) == (7, 3, page, 3)
    assert client.get("/memories", params={"limit": 3, "page": 3}).json()["data"][0]["memory_id"]


@pytest.mark.parametrize("query", [
    "limit=0", "limit=501", "limit=-1", "limit=abc", "limit=1.5",
    "page=0", "page=-1", "page=abc", "page=1000000001",
    "sort_by=memory", "sort_by=user_id", "sort_order=up", "sort_order=ASC",
])
def test_out_of_range_or_malformed_paging_and_sorting_is_422(client, query):
    response = client.get(f"/memories?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert query.split("=")[0] in body["detail"]


def test_largest_declared_limit_and_page_are_served(client, repository):
    repository.insert([stored_memory("m1")])
    meta = client.get("/memories", params={"limit": 500, "page": 1_000_000_000}).json()["meta"]
    assert (meta["limit"], meta["page"], meta["total_count"]) == (500, 1_000_000_000, 1)


@pytest.mark.parametrize("needle", ['say "hi"', '"', 'a"b', "NEAR", "x OR y", "(*)", "^st", "日本語"])
def test_search_needles_that_mean_something_to_a_full_text_engine_match_literally(client, repository,
                                                                                  needle):
    repository.insert([stored_memory("hit", memory=f"before {needle} after", minutes=1),
                       stored_memory("miss", memory="nothing to see", minutes=2)])
    assert ids(client.get("/memories", params={"search_content": needle})) == ["hit"]


def test_search_follows_updates_and_deletes(client, create):
    created = create(memory="the old wording")
    client.patch(f"/memories/{created['memory_id']}",
                 json={"memory": "the new phrasing", "user_id": "user-1"})
    assert ids(client.get("/memories", params={"search_content": "old wording"})) == []
    assert ids(client.get("/memories", params={"search_content": "new phras"})) == [created["memory_id"]]
    client.delete(f"/memories/{created['memory_id']}")
    assert ids(client.get("/memories", params={"search_content": "new phras"})) == []


@pytest.mark.parametrize("needle", ["a", "ab", "abc", "abcd"])
def test_search_is_exact_for_every_needle_length(client, repository, needle):
    broken = needle[:-1] + "z"  # one character off
    repository.insert([stored_memory("hit", memory=f"xx{needle.upper()}yy", minutes=1),
                       stored_memory("near", memory=f"xx{broken}yy", minutes=2)])
    assert ids(client.get("/memories", params={"search_content": needle})) == ["hit"]


def test_total_count_includes_memories_without_an_owner(client, repository):
    repository.insert([stored_memory("owned", user_id="u1"), stored_memory("anonymous", user_id=None)])
    assert client.get("/memories").json()["meta"]["total_count"] == 2
    assert client.get("/memories", params={"user_id": "u1"}).json()["meta"]["total_count"] == 1
    assert client.get("/memories", params={"user_id": "nobody"}).json()["meta"]["total_count"] == 0
