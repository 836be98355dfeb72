"""The access log: exactly one line per request on ``mnemo.access``, as JSON objects when
MNEMO_LOG_FORMAT=json and readable text otherwise, and error lines in the same format."""

from __future__ import annotations

import logging
import re

import httpx
import orjson
import pytest

from mnemo import logs
from mnemo.app import create_app
from mnemo.cli import EXIT_USAGE
from mnemo.config import ConfigError, Settings
from storage import Catalog, Database

from .command_line import run_mnemo
from .conftest import DB_ID, make_settings, mnemo_command, server_env, start_server, stop_server

FIELDS = {"time", "level", "logger", "message", "method", "path", "operation", "status",
          "duration_ms", "request_id"}


def access_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logs.ACCESS_LOGGER]


def as_json(record: logging.LogRecord) -> dict:
    return orjson.loads(logs.JsonFormatter().format(record))


def one_request(caplog, call) -> tuple[object, dict]:
    """Make one request; its answer and its one access line, formatted as JSON."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mnemo"):
        response = call()
    lines = access_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    line = as_json(lines[0])
    assert set(line) >= FIELDS, line
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["level"] == "INFO" and line["logger"] == "mnemo.access"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    return response, line


def test_a_success_is_logged_with_the_path_template_operation_and_db_id(client, create, caplog):
    memory_id = create()["memory_id"]
    response, line = one_request(caplog, lambda: client.get(
        f"/memories/{memory_id}", params={"db_id": DB_ID}, headers={"X-Request-ID": "trace-7"}))
    assert response.status_code == 200
    assert {k: line[k] for k in ("method", "path", "operation", "status", "request_id", "db_id")} == {
        "method": "GET", "path": "/memories/{memory_id}", "operation": "get_memory", "status": 200,
        "request_id": "trace-7", "db_id": DB_ID}
    # The memory id is not in the line: only the template is.
    assert memory_id not in orjson.dumps(line).decode()


def test_a_request_without_db_id_has_no_db_id_in_its_line(client, caplog):
    _, line = one_request(caplog, lambda: client.get("/memory_topics"))
    assert line["operation"] == "get_memory_topics" and "db_id" not in line


def test_a_validation_error_is_logged_as_its_operation_with_422(client, caplog):
    response, line = one_request(caplog, lambda: client.get("/memories", params={"limit": 0}))
    assert response.status_code == 422
    assert (line["path"], line["operation"], line["status"]) == ("/memories", "get_memories", 422)


def test_an_unknown_route_is_logged_as_sent_percent_encoded_with_no_operation(client, caplog):
    response, line = one_request(caplog, lambda: client.get('/wp-admin/"x y"%0a%7B'))
    assert response.status_code in (404, 422)
    assert line["operation"] is None
    assert line["path"] == "/wp-admin/%22x%20y%22%0A%7B"


def test_an_unreachable_database_is_logged_as_503_beside_its_error_line(table_name, caplog):
    catalog = Catalog([Database.connect(DB_ID, "sqlite:////nonexistent-directory/m.db", [table_name])])
    with create_app(make_settings(table_name), catalog=catalog).test_client() as client:
        response, line = one_request(caplog, lambda: client.get("/memories"))
    assert response.status_code == 503 and line["status"] == 503
    errors = [as_json(r) for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all(e["request_id"] == response.headers["X-Request-ID"] for e in errors)


def test_an_answer_that_escapes_every_handler_is_logged_as_500(client, repository, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(repository, "get", explode)
    response, line = one_request(caplog, lambda: client.get("/memories/x"))
    assert response.status_code == 500 and line["status"] == 500 and line["operation"] == "get_memory"
    error = next(as_json(r) for r in caplog.records if r.levelno == logging.ERROR)
    assert error["request_id"] == line["request_id"] and "boom" in error["exception"]


def test_the_text_format_says_the_same_on_one_readable_line(client, caplog):
    one_request(caplog, lambda: client.get("/memories/m-1", params={"db_id": DB_ID},
                                           headers={"X-Request-ID": "r-1"}))
    text = logs.formatter("text").format(access_lines(caplog)[0])
    assert re.fullmatch(r"\S+ \S+ INFO mnemo.access: GET /memories/\{memory_id\} 404 [0-9.]+ ms "
                        rf'operation=get_memory request_id=r-1 db_id="{DB_ID}"', text), text


def test_the_log_format_is_text_or_json_and_nothing_else(monkeypatch, capsys):
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"MNEMO_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="MNEMO_LOG_FORMAT"):
        Settings.from_env({"MNEMO_LOG_FORMAT": "xml"})
    monkeypatch.setenv("MNEMO_LOG_FORMAT", "xml")
    assert run_mnemo(["migrate", "--check"]) == EXIT_USAGE
    assert "MNEMO_LOG_FORMAT" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_mnemo_serve_logs_each_request_once_as_json(database_url, table_name, tmp_path, workers):
    env = server_env(MNEMO_DATABASE_URL=database_url, MNEMO_DB_ID=DB_ID, MNEMO_TABLE=table_name,
                     MNEMO_LOG_FORMAT="json")
    process, base = start_server([*mnemo_command(), "serve", "--port", "{port}", "--workers", workers],
                                 env, cwd=tmp_path)
    try:
        answers = [httpx.get(f"{base}/memories/nope", headers={"X-Request-ID": f"json-{i}"})
                   for i in range(5)]
    finally:
        stop_server(process)
    lines = process.stdout.read().decode().splitlines()
    # Every line the server wrote is a JSON object: Mnemo's, uvicorn's and gunicorn's alike.
    parsed = [orjson.loads(line) for line in lines if line.strip()]
    access = [line for line in parsed if line.get("logger") == logs.ACCESS_LOGGER]
    mine = [line for line in access if line["request_id"].startswith("json-")]
    assert [line["request_id"] for line in mine] == [a.headers["X-Request-ID"] for a in answers]
    assert all(line["path"] == "/memories/{memory_id}" and line["status"] == 404 for line in mine)
