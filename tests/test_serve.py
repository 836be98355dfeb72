"""End to end: the real ``mnemo serve`` process, spoken to over HTTP."""

from __future__ import annotations

import http.client
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mnemo.cli import EXIT_FAILURE, EXIT_USAGE, main


def test_mnemo_serve_answers_over_http_and_stops_cleanly_on_sigterm(serve, database_url):
    base = serve(security_key="e2e-key")
    auth = {"Authorization": "Bearer e2e-key"}
    assert httpx.get(f"{base}/memories").status_code == 401
    created = httpx.post(f"{base}/memories", headers=auth,
                         json={"memory": "Likes jazz", "user_id": "u1", "topics": ["music"]}).json()
    fetched = httpx.get(f"{base}/memories/{created['memory_id']}", headers=auth).json()
    assert fetched == created
    assert httpx.get(f"{base}/memory_topics", headers=auth).json() == ["music"]
    assert httpx.get(f"{base}/docs/").status_code == 200
    assert "server" not in httpx.get(f"{base}/health").headers


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_keep_alive_connection_idle_for_a_few_seconds_is_still_answered(serve, workers):
    # A client (or a proxy) reusing its connection after a pause must not race the server
    # closing it: gunicorn's own default closed it after 2 s.
    connection = http.client.HTTPConnection(serve("--workers", workers).removeprefix("http://"),
                                            timeout=10)
    try:
        for pause in (0, 6):
            time.sleep(pause)
            # Over the same socket: http.client opens a new one only once it has closed its own.
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b'{"status":"ok"}\n'), pause
    finally:
        connection.close()


def test_several_worker_processes_write_at_once_without_losing_anything(serve):
    base = serve("--workers", "2")

    def create(i: int) -> int:
        body = {"memory": f"memory {i}", "user_id": f"user-{i % 3}", "topics": [f"t{i % 5}"]}
        response = httpx.post(f"{base}/memories", json=body, timeout=30)
        return response.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(create, range(120)))
    assert statuses == [200] * 120
    meta = httpx.get(f"{base}/memories").json()["meta"]
    assert meta["total_count"] == 120
    stats = httpx.get(f"{base}/user_memory_stats").json()["data"]
    assert sorted(s["total_memories"] for s in stats) == [40, 40, 40]
    assert httpx.get(f"{base}/memory_topics").json() == [f"t{i}" for i in range(5)]
    # No answer names the software behind it, with gunicorn's workers as with uvicorn alone.
    assert "server" not in httpx.get(f"{base}/health").headers


def test_serve_refuses_a_bad_setting_with_exit_code_2(monkeypatch, capsys):
    monkeypatch.setenv("MNEMO_TABLE", "no spaces allowed")
    assert main(["serve"]) == EXIT_USAGE
    assert "table name" in capsys.readouterr().err


def test_serve_that_stops_leaves_no_metrics_directory_behind_nor_in_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MNEMO_DATABASE_URL", "sqlite:////nonexistent-directory/memories.db")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert main(["serve", "--workers", "2"]) == EXIT_FAILURE
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_an_unreachable_database_with_exit_code_1(monkeypatch, capsys):
    monkeypatch.setenv("MNEMO_DATABASE_URL", "sqlite:////nonexistent-directory/memories.db")
    assert main(["serve"]) == EXIT_FAILURE
    assert "cannot open the database" in capsys.readouterr().err
