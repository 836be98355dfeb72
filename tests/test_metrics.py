"""GET /metrics: Prometheus metrics of requests, latency, connection pools and memories stored,
for the scraper only, summed over every worker of a multi-worker server."""

from __future__ import annotations

import glob
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mnemo.app import create_app
from mnemo.config import JwtConfig
from storage import Catalog, Database

from .conftest import (
    DB_ID,
    make_settings,
    mnemo_command,
    server_env,
    start_server,
    stop_server,
    stored_memory,
)
from .tokens import ADMIN, bearer, rs256, rsa_keys


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value, for every sample of an exposition."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def test_requests_are_counted_by_operation_and_status_and_timed_by_operation(client, create):
    before = scrape(client)
    create()
    client.get("/memories/nope")
    client.get("/memories", params={"limit": 0})
    client.get("/no/such/route")
    after = scrape(client)

    def counted(operation, status):
        return (value(after, "mnemo_requests_total", operation=operation, status=status)
                - value(before, "mnemo_requests_total", operation=operation, status=status))

    assert counted("create_memory", "200") == 1
    assert counted("get_memory", "404") == 1
    assert counted("get_memories", "422") == 1
    # A made-up path adds no series of its own: it is counted under operation "none".
    assert counted("none", "404") == 1
    assert not any("no/such" in str(labels) for _, labels in after)
    # The scrape before this one is counted too.
    assert counted("get_metrics", "200") == 1
    timed = (value(after, "mnemo_request_duration_seconds_count", operation="create_memory")
             - value(before, "mnemo_request_duration_seconds_count", operation="create_memory"))
    assert timed == 1
    assert value(after, "mnemo_request_duration_seconds_sum", operation="create_memory") > 0


def test_memories_stored_are_read_from_the_per_user_statistics(client, repository, table_name):
    repository.insert([stored_memory("a", user_id="u1"), stored_memory("b", user_id="u1"),
                       stored_memory("c", user_id="u2"), stored_memory("d", user_id=None)])
    scraped = scrape(client)
    assert value(scraped, "mnemo_memories_stored", db_id=DB_ID, table=table_name) == 4
    assert value(scraped, "mnemo_database_up", db_id=DB_ID) == 1
    client.delete("/memories/a")
    assert value(scrape(client), "mnemo_memories_stored", db_id=DB_ID, table=table_name) == 3


def test_connections_in_use_and_the_pool_size_are_reported_per_database(client, catalog):
    idle = value(scrape(client), "mnemo_db_connections_in_use", db_id=DB_ID)
    with catalog.databases[DB_ID].engine.connect():
        busy = scrape(client)
    assert value(busy, "mnemo_db_connections_in_use", db_id=DB_ID) == idle + 1
    assert value(busy, "mnemo_db_connections_max", db_id=DB_ID) == 10
    assert value(scrape(client), "mnemo_db_connections_in_use", db_id=DB_ID) == idle


def test_an_unreachable_database_is_reported_down_and_the_metrics_still_answer(table_name):
    catalog = Catalog([Database.connect(DB_ID, "sqlite:////nonexistent-directory/memories.db", [table_name])])
    with create_app(make_settings(table_name), catalog=catalog).test_client() as client:
        scraped = scrape(client)
    assert value(scraped, "mnemo_database_up", db_id=DB_ID) == 0
    assert (("mnemo_memories_stored", frozenset({("db_id", DB_ID), ("table", table_name)}))
            not in scraped)


def test_with_no_credential_configured_metrics_are_open_like_the_api(client_with):
    assert client_with().get("/metrics").status_code == 200


def test_with_a_security_key_metrics_need_it(client_with):
    client = client_with(security_key="the-key")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("wrong")).status_code == 401
    assert client.get("/metrics", headers=bearer("the-key")).status_code == 200


def test_the_metrics_token_opens_metrics_and_nothing_else(client_with):
    client = client_with(security_key="the-key", metrics_token="scraper-token")
    assert client.get("/metrics", headers=bearer("scraper-token")).status_code == 200
    assert client.get("/metrics", headers=bearer("the-key")).status_code == 200
    refused = client.get("/memories", headers=bearer("scraper-token"))
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"


def test_a_metrics_token_alone_closes_metrics_but_leaves_the_open_api_open(client_with):
    client = client_with(metrics_token="scraper-token")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("scraper-token")).status_code == 200
    assert client.get("/memories").status_code == 200


def test_a_users_jwt_cannot_read_metrics_and_an_administrators_can(client_with):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem))
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", headers=bearer(rs256(sub="alice")))
    assert refused.status_code == 403 and refused.json()["error_code"] == "FORBIDDEN"
    assert client.get("/metrics", headers=bearer(rs256(sub="admin", scopes=[ADMIN]))).status_code == 200


def test_several_workers_are_summed_into_one_scrape_and_their_directory_is_removed(
        database_url, table_name, tmp_path):
    env = server_env(MNEMO_DATABASE_URL=database_url, MNEMO_DB_ID=DB_ID, MNEMO_TABLE=table_name,
                     MNEMO_METRICS_TOKEN="scraper", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "stale"))
    process, base = start_server([*mnemo_command(), "serve", "--port", "{port}", "--workers", "2"],
                                 env, cwd=tmp_path)
    try:
        with httpx.Client(base_url=base) as http:
            for _ in range(30):
                # A fresh connection each time, so both workers take some of them.
                response = httpx.get(f"{base}/memory_topics", headers={"Connection": "close"})
                assert response.status_code == 200
            http.post("/memories", json={"memory": "m", "user_id": "u"})
            scrapes = [samples(http.get("/metrics", headers=bearer("scraper")).text) for _ in range(4)]
            # A worker that exits stops counting in the gauges; gunicorn starts another.
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
            workers = children.read_text().split()
            os.kill(int(workers[0]), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while not (started := set(children.read_text().split()) - set(workers)):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            # Until the new worker has made its pool, and with it its file of gauges.
            gauges = f"{tempfile.gettempdir()}/mnemo-metrics-*/gauge_livesum_{started.pop()}.db"
            while not glob.glob(gauges):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            after_restart = samples(http.get("/metrics", headers=bearer("scraper")).text)
    finally:
        stop_server(process)
    output = process.stdout.read().decode()
    for scraped in scrapes:
        # Whichever worker answers, it answers for both.
        assert value(scraped, "mnemo_requests_total", operation="get_memory_topics", status="200") == 30
        assert value(scraped, "mnemo_db_connections_max", db_id=DB_ID) == 2 * 10
        assert value(scraped, "mnemo_memories_stored", db_id=DB_ID, table=table_name) == 1
    assert value(after_restart, "mnemo_db_connections_max", db_id=DB_ID) == 2 * 10
    # Counters keep what the dead worker counted.
    assert value(after_restart, "mnemo_requests_total", operation="get_memory_topics", status="200") == 30
    directory = re.search(r"keep their metrics in (\S+)", output).group(1)
    assert directory != str(tmp_path / "stale")
    assert not (tmp_path / "stale").exists()
    assert not Path(directory).exists()
