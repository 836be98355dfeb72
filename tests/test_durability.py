"""Nothing acknowledged is lost, concurrent writers never tear a memory, and SIGTERM is orderly.

Each test runs the real ``mnemo serve --workers 2`` (gunicorn and its workers, one process
group) on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .conftest import DB_ID, drop_tables, mnemo_command, server_env, start_server

pytestmark = pytest.mark.slow

WRITERS = 6


@pytest.fixture
def server(database_url, table_name, tmp_path):
    """Start ``mnemo serve`` on the test's database; every process it started is gone after."""
    processes = []

    def start(*arguments: str):
        env = server_env(MNEMO_DATABASE_URL=database_url, MNEMO_DB_ID=DB_ID, MNEMO_TABLE=table_name)
        process, base = start_server([*mnemo_command(), "serve", "--port", "{port}", *arguments],
                                     env, cwd=tmp_path)
        processes.append(process)
        return process, base

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    drop_tables(database_url, table_name)


def version(name: str, n: int) -> dict:
    """Version ``n`` of a writer's memory: its text and its topics say the same ``n``."""
    return {"memory": f"{name} v{n}", "user_id": name.split("/")[0], "topics": [name, f"v{n}"]}


def is_whole(memory: dict) -> bool:
    """Text and topics of one written version, never parts of two."""
    name, n = memory["memory"].rsplit(" v", 1)
    return memory["topics"] == [name, f"v{n}"]


class Writer(threading.Thread):
    """Creates, updates and deletes its own memories until the server dies, recording what the
    server acknowledged and what was in flight when it died."""

    def __init__(self, base: str, number: int):
        super().__init__()
        self.base, self.number = base, number
        self.acknowledged: dict[str, int | None] = {}  # memory id -> version, None once deleted
        self.in_flight: tuple[str | None, int | None] | None = None
        self.random = random.Random(number)

    def run(self) -> None:
        client = httpx.Client(base_url=self.base, timeout=30)
        step = 0
        try:
            while True:
                step += 1
                live = [m for m, v in self.acknowledged.items() if v is not None]
                choice = self.random.random()
                if not live or choice < 0.5:
                    self.in_flight = (None, 0)
                    response = client.post("/memories", json=version(f"w{self.number}/{step}", 0))
                    assert response.status_code == 200, response.text
                    self.acknowledged[response.json()["memory_id"]] = 0
                elif choice < 0.85:
                    memory_id = self.random.choice(live)
                    n = self.acknowledged[memory_id] + 1
                    self.in_flight = (memory_id, n)
                    current = client.get(f"/memories/{memory_id}").json()
                    name = current["topics"][0]
                    response = client.patch(f"/memories/{memory_id}", json=version(name, n))
                    assert response.status_code == 200, response.text
                    self.acknowledged[memory_id] = n
                else:
                    memory_id = self.random.choice(live)
                    self.in_flight = (memory_id, None)
                    response = client.delete(f"/memories/{memory_id}")
                    assert response.status_code == 204, response.text
                    self.acknowledged[memory_id] = None
                self.in_flight = None
        except httpx.TransportError:
            pass  # the server was killed: whatever was in flight stays in self.in_flight
        finally:
            client.close()


def test_every_acknowledged_write_survives_kill_9_of_every_server_process(server):
    process, base = server("--workers", "2")
    writers = [Writer(base, number) for number in range(WRITERS)]
    for writer in writers:
        writer.start()
    time.sleep(random.uniform(3, 5))
    os.killpg(process.pid, signal.SIGKILL)  # gunicorn's arbiter and both workers, mid-load
    process.wait()
    for writer in writers:
        writer.join(timeout=60)
        assert not writer.is_alive()
    assert sum(len(w.acknowledged) for w in writers) > 20, "too little load to prove anything"

    _, base = server("--workers", "2")
    client = httpx.Client(base_url=base, timeout=30)
    for writer in writers:
        for memory_id, acked in writer.acknowledged.items():
            response = client.get(f"/memories/{memory_id}")
            possible = {acked}
            if writer.in_flight and writer.in_flight[0] == memory_id:
                possible.add(writer.in_flight[1])  # may or may not have been applied
            if response.status_code == 404:
                assert None in possible, (memory_id, acked)
                continue
            memory = response.json()
            assert is_whole(memory), memory
            assert int(memory["memory"].rsplit(" v", 1)[1]) in possible, (memory, possible)
    # Every stored memory is whole, and the derived data agrees with the memories.
    stored = []
    page = 1
    while True:
        listed = client.get("/memories", params={"limit": 500, "page": page}).json()
        stored += listed["data"]
        if page >= listed["meta"]["total_pages"]:
            break
        page += 1
    assert all(is_whole(memory) for memory in stored)
    per_user: dict[str, int] = {}
    for memory in stored:
        per_user[memory["user_id"]] = per_user.get(memory["user_id"], 0) + 1
    stats = client.get("/user_memory_stats", params={"limit": 100}).json()["data"]
    assert {s["user_id"]: s["total_memories"] for s in stats} == per_user
    topics = set(client.get("/memory_topics").json())
    assert topics == {topic for memory in stored for topic in memory["topics"]}
    client.close()


def test_concurrent_patches_of_one_memory_leave_exactly_one_written_version(server):
    _, base = server("--workers", "2")
    created = httpx.post(f"{base}/memories", json=version("u/shared", 0)).json()
    memory_id = created["memory_id"]

    def patch(n: int) -> dict:
        with httpx.Client(base_url=base, timeout=60) as client:
            response = client.patch(f"/memories/{memory_id}", json=version("u/shared", n))
            assert response.status_code == 200, response.text
            return response.json()

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(patch, range(1, 121)))
    assert all(is_whole(answer) for answer in answers)
    final = httpx.get(f"{base}/memories/{memory_id}").json()
    assert is_whole(final)
    # The last write wins whole: the stored version is the answer with the latest updated_at.
    latest = max(answers, key=lambda answer: answer["updated_at"])
    assert final == latest
    assert len({answer["updated_at"] for answer in answers}) == len(answers)
    assert httpx.get(f"{base}/user_memory_stats").json()["data"][0]["total_memories"] == 1
    listed = httpx.get(f"{base}/memories", params={"topics": "u/shared"}).json()
    assert [memory["memory_id"] for memory in listed["data"]] == [memory_id]


# SQLite only: holding its write lock is how the test keeps a request in flight, and an empty
# write-ahead log is how it sees every connection closed. The shutdown path is the same code on
# PostgreSQL.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_closes_the_pools(
        server, database_url, table_name, workers):
    process, base = server("--workers", workers)
    path = Path(database_url.removeprefix("sqlite:///"))
    assert httpx.post(f"{base}/memories", json=version("u/before", 0)).status_code == 200

    # Hold the write lock, so that the next create waits (busy timeout) inside the server.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    answer: dict = {}

    def create() -> None:
        answer["response"] = httpx.post(f"{base}/memories", json=version("u/in-flight", 0), timeout=60)

    in_flight = threading.Thread(target=create)
    in_flight.start()
    time.sleep(1.5)  # the request has reached a worker and waits for the lock
    os.killpg(process.pid, signal.SIGTERM)
    time.sleep(1.5)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/health", timeout=2)
    assert in_flight.is_alive(), "the request in flight ended before it could write"
    blocker.execute("COMMIT")
    blocker.close()
    in_flight.join(timeout=30)
    assert answer["response"].status_code == 200, answer["response"].text
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    # Its write is stored, and every connection was closed: the last one to close checkpoints
    # the write-ahead log into the database and removes it.
    assert not Path(f"{path}-wal").exists()
    with sqlite3.connect(path) as check:
        texts = {row[0] for row in check.execute(f"SELECT memory FROM {table_name}")}
    assert texts == {"u/before v0", "u/in-flight v0"}

