"""Agno's own client, unmodified, against a live ``mnemo serve``: every memory method.

Runs open, with a security key and with an administrator's JWT (Agno's client passes either in
``headers``), on SQLite and on PostgreSQL; and with a user's JWT, which confines it to its own
memories.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from agno.client import AgentOSClient
from agno.utils.http import set_default_async_client

from .conftest import DB_ID
from .tokens import ADMIN, ALL_USER_SCOPES, rs256, rsa_keys

KEY = "agno-client-key"


@pytest.fixture(params=["open", "with-key", "with-admin-jwt"])
def agno(request, serve, table_name):
    """Run a coroutine ``steps(client, headers, table)`` against a fresh server."""
    headers = None
    if request.param == "with-key":
        base = serve(security_key=KEY)
        headers = {"Authorization": f"Bearer {KEY}"}
    elif request.param == "with-admin-jwt":
        base = serve(MNEMO_JWT_VERIFICATION_KEY=rsa_keys().public_pem)
        headers = {"Authorization": f"Bearer {rs256(sub='root', scopes=[ADMIN])}"}
    else:
        base = serve()
    return client_runner(base, headers, table_name)


def client_runner(base: str, headers: dict | None, table_name: str):
    def run(steps):
        async def main():
            # A client bound to this event loop; Agno's shared default is bound to the first one.
            async with httpx.AsyncClient(timeout=30) as http:
                set_default_async_client(http)
                return await steps(AgentOSClient(base_url=base), headers, table_name)

        return asyncio.run(main())

    return run


def test_create_and_get(agno):
    async def steps(client, headers, _table):
        created = await client.create_memory(memory="Prefers dark mode", user_id="alice",
                                             topics=["ui", "préférences"], headers=headers)
        assert created.memory == "Prefers dark mode"
        assert created.topics == ["ui", "préférences"]
        assert created.user_id == "alice"
        assert created.updated_at.tzinfo is not None
        assert abs((datetime.now(UTC) - created.updated_at).total_seconds()) < 60
        fetched = await client.get_memory(created.memory_id, headers=headers)
        assert fetched == created
        mine = await client.get_memory(created.memory_id, user_id="alice", headers=headers)
        assert mine.memory_id == created.memory_id
        with pytest.raises(httpx.HTTPStatusError) as missing:
            await client.get_memory(created.memory_id, user_id="bob", headers=headers)
        assert missing.value.response.status_code == 404

    agno(steps)


def test_list_with_every_filter_and_paging_and_sorting_option(agno):
    async def steps(client, headers, table):
        made = []
        for i, topics in enumerate([["a"], ["a", "b"], ["b"], ["a", "b", "a,b"], []]):
            memory = await client.create_memory(memory=f"Memory number {i} about Café",
                                                user_id="alice" if i % 2 == 0 else "bob",
                                                topics=topics, headers=headers)
            made.append(memory.memory_id)

        everything = await client.list_memories(headers=headers)
        assert [m.memory_id for m in everything.data] == made[::-1]
        assert (everything.meta.total_count, everything.meta.total_pages) == (5, 1)

        alice = await client.list_memories(user_id="alice", headers=headers)
        assert {m.memory_id for m in alice.data} == {made[0], made[2], made[4]}

        both = await client.list_memories(topics=["a", "b"], headers=headers)
        assert [m.memory_id for m in both.data] == [made[3], made[1]]
        # httpx sends it as topics=a%2Cb, which Agno AgentOS, and so Mnemo, reads as a and b.
        comma = await client.list_memories(topics=["a,b"], headers=headers)
        assert [m.memory_id for m in comma.data] == [made[3], made[1]]

        found = await client.list_memories(search_content="NUMBER 2 ABOUT café", headers=headers)
        assert [m.memory_id for m in found.data] == [made[2]]

        assert (await client.list_memories(agent_id="none", headers=headers)).data == []
        assert (await client.list_memories(team_id="none", headers=headers)).data == []

        pages = [await client.list_memories(limit=2, page=page, sort_by="created_at",
                                            sort_order="asc", headers=headers)
                 for page in (1, 2, 3)]
        assert [m.memory_id for p in pages for m in p.data] == made
        assert [p.meta.total_pages for p in pages] == [3, 3, 3]

        routed = await client.list_memories(db_id=DB_ID, table=table, headers=headers)
        assert routed.meta.total_count == 5

    agno(steps)


def test_update(agno):
    async def steps(client, headers, _table):
        created = await client.create_memory(memory="old", user_id="alice", topics=["x"], headers=headers)
        updated = await client.update_memory(created.memory_id, memory="new", user_id="alice",
                                             topics=["y"], headers=headers)
        assert (updated.memory, updated.topics) == ("new", ["y"])
        assert updated.updated_at > created.updated_at
        with pytest.raises(httpx.HTTPStatusError) as missing:
            await client.update_memory("no-such-id", memory="x", user_id="alice", headers=headers)
        assert missing.value.response.status_code == 404

    agno(steps)


def test_delete_one_and_many(agno):
    async def steps(client, headers, _table):
        ids = [(await client.create_memory(memory=f"m{i}", user_id="alice", headers=headers)).memory_id
               for i in range(4)]
        assert await client.delete_memory(ids[0], headers=headers) is None
        assert await client.delete_memories(ids[1:3], headers=headers) is None
        assert await client.delete_memories([ids[3]], user_id="bob", headers=headers) is None
        remaining = await client.list_memories(headers=headers)
        assert [m.memory_id for m in remaining.data] == [ids[3]]

    agno(steps)


def test_topics_and_user_stats(agno):
    async def steps(client, headers, _table):
        await client.create_memory(memory="x", user_id="alice", topics=["work", "日本"], headers=headers)
        await client.create_memory(memory="y", user_id="bob", topics=["coffee"], headers=headers)
        assert await client.get_memory_topics(headers=headers) == ["coffee", "work", "日本"]
        assert await client.get_memory_topics(user_id="bob", headers=headers) == ["coffee"]

        stats = await client.get_user_memory_stats(headers=headers)
        assert [(s.user_id, s.total_memories) for s in stats.data] == [("bob", 1), ("alice", 1)]
        assert stats.meta.total_count == 2
        one = await client.get_user_memory_stats(limit=1, page=2, headers=headers)
        assert [s.user_id for s in one.data] == ["alice"]
        alice = await client.get_user_memory_stats(user_id="alice", headers=headers)
        assert [s.user_id for s in alice.data] == ["alice"]

    agno(steps)


def test_without_the_key_agnos_client_is_refused(serve):
    base = serve(security_key=KEY)

    async def main():
        async with httpx.AsyncClient(timeout=30) as http:
            set_default_async_client(http)
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await AgentOSClient(base_url=base).list_memories()
            return refused.value.response

    response = asyncio.run(main())
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"


def test_a_users_jwt_confines_agnos_client_to_that_users_memories(serve, table_name):
    base = serve(MNEMO_JWT_VERIFICATION_KEY=rsa_keys().public_pem)
    admin = {"Authorization": f"Bearer {rs256(sub='root', scopes=[ADMIN])}"}
    bob = {"Authorization": f"Bearer {rs256(sub='bob', scopes=ALL_USER_SCOPES)}"}

    async def steps(client, _headers, _table):
        alices = await client.create_memory(memory="Alice's secret", user_id="alice", headers=admin)
        planted = await client.create_memory(memory="Bob's note", user_id="alice", headers=bob)
        assert planted.user_id == "bob"
        listed = await client.list_memories(user_id="alice", headers=bob)
        assert [m.memory_id for m in listed.data] == [planted.memory_id]
        with pytest.raises(httpx.HTTPStatusError) as hidden:
            await client.get_memory(alices.memory_id, user_id="alice", headers=bob)
        assert hidden.value.response.status_code == 404
        await client.delete_memory(alices.memory_id, user_id="alice", headers=bob)
        assert (await client.get_memory(alices.memory_id, headers=admin)).memory == "Alice's secret"
        assert await client.get_memory_topics(user_id="alice", headers=bob) == []

    client_runner(base, None, table_name)(steps)


def test_optimize_memories_with_a_model_behind_an_openai_compatible_api(serve, table_name):
    from .fake_openai import FakeOpenAI

    fake = FakeOpenAI().start()
    try:
        base = serve(MNEMO_OPENAI_BASE_URL=fake.base_url, MNEMO_OPTIMIZE_MODEL="tiny")
        run = client_runner(base, None, table_name)

        async def steps(client, headers, _table):
            for text in ("Likes tea", "Likes coffee in the morning"):
                await client.create_memory(memory=text, user_id="alice", topics=["drinks"], headers=headers)
            preview = await client.optimize_memories(user_id="alice", apply=False, headers=headers)
            assert (preview.memories_before, preview.memories_after) == (2, 1)
            assert preview.memories[0].memory == "User likes tea and coffee."
            assert len((await client.list_memories(user_id="alice", headers=headers)).data) == 2
            applied = await client.optimize_memories(user_id="alice", model="openai:other", headers=headers)
            assert applied.tokens_before == len("Likes tea") // 4 + len("Likes coffee in the morning") // 4
            remaining = await client.list_memories(user_id="alice", headers=headers)
            assert [m.memory_id for m in remaining.data] == [applied.memories[0].memory_id]

        run(steps)
        assert [r["json"]["model"] for r in fake.requests] == ["tiny", "other"]
    finally:
        fake.stop()
