"""Soak: mixed reads and writes from many clients against ``mnemo serve --workers 2`` for a
bounded time, over loopback. No errors, memory that stops growing, latency that does not drift.

``MNEMO_SOAK_SECONDS`` sets the duration (60 s unless set); the figures of a run are printed
(``pytest -s``) and docs/RELIABILITY.md records those of the last one written down.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import DB_ID, drop_tables, mnemo_command, server_env, start_server, stop_server

pytestmark = pytest.mark.slow

SOAK_S = float(os.environ.get("MNEMO_SOAK_SECONDS", "60"))
CLIENTS = 8
SEED_PER_CLIENT = 30
# The first part of the run is warm-up: imports finish, caches and pools fill.
WARM_UP = 0.2
# Bounds the run must keep (see docs/RELIABILITY.md for what they mean).
RSS_GROWTH_BOUND_MIB = 32       # the whole server (arbiter and workers), after warm-up
MEDIAN_DRIFT_FACTOR = 2.0       # median latency of the last third vs the first third...
MEDIAN_DRIFT_SLACK_MS = 5.0     # ...plus this much, for a machine shared with other work
P99_DRIFT_FACTOR = 3.0
P99_DRIFT_SLACK_MS = 25.0


def group_rss_kib(pgid: int) -> int:
    """Resident memory of every process in the process group, in KiB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return total


class Client(threading.Thread):
    def __init__(self, base: str, number: int, deadline: float):
        super().__init__()
        self.base, self.user, self.deadline = base, f"soak-{number}", deadline
        self.random = random.Random(number)
        self.samples: list[tuple[float, float]] = []  # (when, latency in seconds)
        self.errors: list[str] = []
        self.owned: list[str] = []

    def body(self) -> dict:
        n = self.random.randrange(1000)
        return {"memory": f"{self.user} remembers item {n} about coffee and trains",
                "user_id": self.user, "topics": [f"topic-{n % 7}", "soak"]}

    def call(self, client: httpx.Client, method: str, url: str, expected: int, **kwargs):
        started = time.monotonic()
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            self.errors.append(f"{method} {url}: {error!r}")
            return None
        self.samples.append((started, time.monotonic() - started))
        if response.status_code != expected:
            self.errors.append(f"{method} {url}: {response.status_code} {response.text[:200]}")
            return None
        return response

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            for _ in range(SEED_PER_CLIENT):
                created = self.call(client, "POST", "/memories", 200, json=self.body())
                if created is not None:
                    self.owned.append(created.json()["memory_id"])
            self.samples.clear()
            while time.monotonic() < self.deadline:
                self.step(client)

    def step(self, client: httpx.Client) -> None:
        choice = self.random.random()
        if choice < 0.35:
            self.call(client, "GET", "/memories", 200, params={"user_id": self.user, "limit": 20})
        elif choice < 0.55:
            self.call(client, "GET", f"/memories/{self.random.choice(self.owned)}", 200)
        elif choice < 0.65:
            self.call(client, "GET", "/memories", 200,
                      params={"topics": f"topic-{self.random.randrange(7)}", "limit": 10})
        elif choice < 0.72:
            self.call(client, "GET", "/memories", 200, params={"search_content": "item 4", "limit": 10})
        elif choice < 0.76:
            self.call(client, "GET", "/memory_topics", 200, params={"user_id": self.user})
        elif choice < 0.78:
            self.call(client, "GET", "/user_memory_stats", 200, params={"limit": 20})
        elif choice < 0.90:
            self.call(client, "PATCH", f"/memories/{self.random.choice(self.owned)}", 200,
                      json=self.body())
        elif choice < 0.95:
            created = self.call(client, "POST", "/memories", 200, json=self.body(),
                                headers={"Idempotency-Key": f"{self.user}-{time.monotonic_ns()}"})
            if created is not None:
                self.owned.append(created.json()["memory_id"])
        elif len(self.owned) > 5:
            memory_id = self.owned.pop(self.random.randrange(len(self.owned)))
            self.call(client, "DELETE", f"/memories/{memory_id}", 204)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_a_bounded_soak_has_no_errors_no_memory_growth_and_no_latency_drift(
        database_url, table_name, tmp_path):
    env = server_env(MNEMO_DATABASE_URL=database_url, MNEMO_DB_ID=DB_ID, MNEMO_TABLE=table_name)
    process, base = start_server([*mnemo_command(), "serve", "--port", "{port}", "--workers", "2",
                                  "--log-level", "warning"], env, cwd=tmp_path)
    try:
        started = time.monotonic()
        deadline = started + SOAK_S
        clients = [Client(base, number, deadline) for number in range(CLIENTS)]
        for client in clients:
            client.start()
        rss: list[tuple[float, int]] = []
        while any(client.is_alive() for client in clients):
            rss.append((time.monotonic() - started, group_rss_kib(process.pid)))
            time.sleep(1)
        for client in clients:
            client.join()
    finally:
        code = stop_server(process)
        # The server's own account (a worker restarted, a lost connection) goes with a failure.
        log = process.stdout.read().decode()[-3000:]
        assert code in (0, -15), log
        drop_tables(database_url, table_name)

    errors = [error for client in clients for error in client.errors]
    assert errors == [], (errors[:10], log)
    samples = sorted(sample for client in clients for sample in client.samples)
    steady = [s for s in samples if s[0] - started >= WARM_UP * SOAK_S]
    third = len(steady) // 3
    first = [latency * 1000 for _, latency in steady[:third]]
    last = [latency * 1000 for _, latency in steady[-third:]]
    after_warm_up = [kib for when, kib in rss if when >= WARM_UP * SOAK_S]
    growth_mib = (max(after_warm_up) - after_warm_up[0]) / 1024
    figures = {
        "engine": database_url.split(":")[0],
        "seconds": SOAK_S,
        "clients": CLIENTS,
        "requests": len(samples),
        "requests_per_second": round(len(samples) / SOAK_S),
        "errors": len(errors),
        "median_ms_first_third": round(statistics.median(first), 1),
        "median_ms_last_third": round(statistics.median(last), 1),
        "p99_ms_first_third": round(percentile(first, 0.99), 1),
        "p99_ms_last_third": round(percentile(last, 0.99), 1),
        "rss_mib_after_warm_up": round(after_warm_up[0] / 1024, 1),
        "rss_mib_max": round(max(after_warm_up) / 1024, 1),
        "rss_growth_mib": round(growth_mib, 1),
    }
    print("\nsoak:", figures)
    assert growth_mib <= RSS_GROWTH_BOUND_MIB, figures
    assert figures["median_ms_last_third"] <= (MEDIAN_DRIFT_FACTOR * figures["median_ms_first_third"]
                                               + MEDIAN_DRIFT_SLACK_MS), figures
    assert figures["p99_ms_last_third"] <= (P99_DRIFT_FACTOR * figures["p99_ms_first_third"]
                                            + P99_DRIFT_SLACK_MS), figures
