"""End to end: the real ``mnemo serve`` process, spoken to over HTTP."""

from __future__ import annotations

import http.client
import os
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from mnemo import contract, server
from mnemo.cli import EXIT_FAILURE, EXIT_USAGE
from mnemo.config import MULTIPROCESS_DIRECTORY

from .command_line import run_mnemo
from .conftest import free_port


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
    assert run_mnemo(["serve"]) == EXIT_USAGE
    assert "table name" in capsys.readouterr().err


def test_serve_that_stops_leaves_no_metrics_directory_behind_nor_in_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MNEMO_DATABASE_URL", "sqlite:////nonexistent-directory/memories.db")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert run_mnemo(["serve", "--port", str(free_port()), "--workers", "2"]) == EXIT_FAILURE
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_an_unreachable_database_with_exit_code_1(monkeypatch, capsys):
    monkeypatch.setenv("MNEMO_DATABASE_URL", "sqlite:////nonexistent-directory/memories.db")
    assert run_mnemo(["serve", "--port", str(free_port())]) == EXIT_FAILURE
    assert "cannot open the database" in capsys.readouterr().err


# -- what serve checks before serving, and how it says so -----------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_already_taken_exits_1_at_once_saying_so(workers, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MNEMO_DATABASE_URL", f"sqlite:///{tmp_path}/memories.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        assert run_mnemo(["serve", "--port", str(port), "--workers", workers]) == EXIT_FAILURE
    # Before any database is touched, where gunicorn tried to bind for five seconds.
    assert time.monotonic() - started < 4
    assert capsys.readouterr().err == f"mnemo: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert not (tmp_path / "memories.db").exists()


def test_a_server_that_fails_to_start_exits_1_not_with_its_own_code(monkeypatch, tmp_path, capsys):
    # What uvicorn does when it cannot bind (the port taken since serve looked): exit code 3.
    monkeypatch.setenv("MNEMO_DATABASE_URL", f"sqlite:///{tmp_path}/memories.db")
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: sys.exit(3))
    assert run_mnemo(["serve", "--port", str(free_port()), "--workers", "1"]) == EXIT_FAILURE
    assert "mnemo: the server stopped with exit code 3" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["0", "80000", "x"])
def test_a_port_outside_1_to_65535_is_wrong_usage(port, capsys):
    assert run_mnemo(["serve", "--port", port]) == EXIT_USAGE
    assert "Invalid value for '--port'" in capsys.readouterr().err


def test_a_wrong_option_shows_the_usage_of_the_command_it_was_given_to(capsys):
    assert run_mnemo(["serve", "--bogus"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("Usage: mnemo serve [OPTIONS]\n") and "No such option '--bogus'" in err


def test_an_api_document_that_is_not_yaml_exits_2_with_one_clean_message(monkeypatch, tmp_path, capsys):
    broken = tmp_path / "openapi.yaml"
    broken.write_text("openapi: 3.1.0\npaths: [unclosed\n")
    monkeypatch.setattr(contract, "DOCUMENT_LOCATIONS", (broken,))
    assert run_mnemo(["serve", "--port", str(free_port())]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"mnemo: {broken} is not YAML: ") and "Traceback" not in err


def test_a_bad_setting_is_reported_before_anything_else_is_printed(monkeypatch, capsys):
    monkeypatch.setenv("MNEMO_RATE_LIMIT", "lots")
    assert run_mnemo(["serve", "--workers", "2"]) == EXIT_USAGE
    assert capsys.readouterr().err == ("mnemo: MNEMO_RATE_LIMIT must look like 100/second (per second, "
                                       "minute, hour or day), not 'lots'\n")


def test_an_unreachable_postgresql_is_one_message_in_the_drivers_words(monkeypatch, capsys):
    monkeypatch.setenv("MNEMO_DATABASE_URL", "postgresql://mnemo@127.0.0.1:1/mnemo")
    assert run_mnemo(["serve", "--port", str(free_port())]) == EXIT_FAILURE
    err = capsys.readouterr().err
    # Not after storage's warning saying the same, nor with SQLAlchemy's class name and link.
    assert err.startswith('mnemo: cannot open the database: connection failed: connection to server at '
                          '"127.0.0.1", port 1 failed'), err
    assert err.count("connection failed") == 1 and "sqlalche.me" not in err and "OperationalError" not in err


def test_a_worker_leaving_through_serves_code_leaves_the_metrics_directory_to_the_others(
        monkeypatch, tmp_path):
    # gunicorn forks its workers from inside serve: one that ends by SystemExit (an error in
    # it, say) unwinds through serve's code in its own process, which must let it go as it is.
    # Set, not deleted, so that what serve sets is undone after.
    monkeypatch.setenv(MULTIPROCESS_DIRECTORY, str(tmp_path / "inherited"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    master = os.getpid()

    class ForkThenLeave:
        def __init__(self, *_settings):
            pass

        def run(self):
            monkeypatch.setattr(os, "getpid", lambda: master + 1)
            sys.exit(-1)

    monkeypatch.setattr(server, "_Gunicorn", ForkThenLeave)
    with pytest.raises(SystemExit) as exited:
        server.run("127.0.0.1", free_port(), 2, "info", None)
    assert exited.value.code == -1
    assert [path.name[:14] for path in tmp_path.iterdir()] == ["mnemo-metrics-"]
