"""``mnemo spec check`` and ``mnemo spec scaffold``, and ``--help`` on every verb."""

from __future__ import annotations

import copy
import importlib
import inspect
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from mnemo.api_errors import NotImplementedYet
from mnemo.app import create_app
from mnemo.cli import EXIT_FAILURE, EXIT_USAGE
from mnemo.contract import Contract
from mnemo.spec import STUB_MARK

from .command_line import run_mnemo
from .conftest import make_settings, mnemo_command, server_env

ROOT = Path(__file__).resolve().parent.parent
ANSWER = {"200": {"description": "done"}}


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fresh handler package on sys.path, holding one hand-written module."""
    name = f"handlers_{uuid.uuid4().hex[:10]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "notes.py").write_text('def get_note(note_id):\n    return {"id": note_id}, 200\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
def extended(tmp_path, package):
    """Mnemo's document plus operations whose handlers do not exist yet: a module that does not
    exist (reminders) and a function missing from one that does (notes)."""
    document = copy.deepcopy(Contract.load().document)
    reminders, notes = f"{package}.reminders", f"{package}.notes"
    document["paths"]["/reminders"] = {
        "get": {"operationId": "list_reminders", "x-openapi-router-controller": reminders,
                "summary": "List reminders", "responses": ANSWER,
                "parameters": [
                    {"name": "user_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 20}}]},
        "post": {"operationId": "create_reminder", "x-openapi-router-controller": reminders,
                 "responses": ANSWER,
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"type": "object"}}}}},
    }
    document["paths"]["/notes/{note_id}"] = {
        "parameters": [{"name": "note_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {"operationId": "get_note", "x-openapi-router-controller": notes, "responses": ANSWER},
        "delete": {"operationId": "delete_note", "x-openapi-router-controller": notes,
                   "responses": ANSWER},
    }
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def test_spec_check_passes_mnemos_own_document_and_handlers(capsys):
    assert run_mnemo(["spec", "check"]) == 0
    out = capsys.readouterr().out
    assert "  ok               POST /memories -> handlers.memories.create_memory" in out
    assert out.count("  ok  ") == 15
    assert "every operation has a handler and every handler an operation (15 checked)" in out


def test_spec_check_lists_each_operation_without_a_handler_and_exits_1(extended, package, capsys):
    assert run_mnemo(["spec", "check", "--spec", extended]) == EXIT_FAILURE
    out = capsys.readouterr().out
    assert (f"missing          GET /reminders -> {package}.reminders.list_reminders: "
            f"module {package}.reminders does not exist") in out
    assert (f"missing          DELETE /notes/{{note_id}} -> {package}.notes.delete_note: "
            f"module {package}.notes has no function delete_note") in out
    assert f"ok               GET /notes/{{note_id}} -> {package}.notes.get_note" in out
    assert out.endswith("spec check: 3 problems (3 missing)\n")


def test_spec_scaffold_writes_stubs_that_answer_501_and_that_spec_check_reports(extended, package,
                                                                              tmp_path, capsys):
    assert run_mnemo(["spec", "scaffold", "--spec", extended]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / package / 'reminders.py'}: stubbed list_reminders, create_reminder" in out
    assert f"{tmp_path / package / 'notes.py'}: stubbed delete_note" in out

    reminders = importlib.import_module(f"{package}.reminders")
    assert str(inspect.signature(reminders.list_reminders)) == "(user_id=None, limit=20)"
    assert str(inspect.signature(reminders.create_reminder)) == "(body)"
    with pytest.raises(NotImplementedYet) as refused:
        reminders.create_reminder(body={})
    assert (refused.value.status, refused.value.error_code) == (501, "NOT_IMPLEMENTED")
    assert refused.value.detail == ("POST /reminders (create_reminder) is in the API document but not "
                                    "implemented yet")
    notes = importlib.import_module(f"{package}.notes")
    assert notes.get_note("n1") == ({"id": "n1"}, 200)  # the hand-written handler is untouched
    assert getattr(notes.delete_note, STUB_MARK) == "DELETE /notes/{note_id}"

    assert run_mnemo(["spec", "check", "--spec", extended]) == EXIT_FAILURE
    out = capsys.readouterr().out
    assert (f"not implemented  POST /reminders -> {package}.reminders.create_reminder: "
            "a scaffolded stub that answers 501") in out
    assert out.endswith("spec check: 3 problems (3 not implemented)\n")
    assert run_mnemo(["spec", "scaffold", "--spec", extended]) == 0
    assert "nothing to scaffold" in capsys.readouterr().out


def test_a_scaffolded_stub_answers_501_not_implemented_over_http(extended, catalog, table_name,
                                                                monkeypatch):
    assert run_mnemo(["spec", "scaffold", "--spec", extended]) == 0
    app = create_app(make_settings(table_name), catalog=catalog, contract=Contract.load(extended))
    with app.test_client() as client:
        response = client.get("/reminders", params={"limit": 5})
    assert response.status_code == 501
    assert response.json()["error_code"] == "NOT_IMPLEMENTED"


def test_spec_check_lists_a_public_handler_that_no_operation_names(tmp_path, capsys):
    document = copy.deepcopy(Contract.load().document)
    del document["paths"]["/health"]
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(document))
    assert run_mnemo(["spec", "check", "--spec", str(path)]) == EXIT_FAILURE
    out = capsys.readouterr().out
    assert "not in the spec  handlers.health.health: a public handler that no operation names" in out


def test_spec_check_lists_a_link_to_an_operation_that_does_not_exist(tmp_path, capsys):
    document = copy.deepcopy(Contract.load().document)
    links = document["paths"]["/memories"]["post"]["responses"]["200"]["links"]
    links["GetMemory"]["operationId"] = "fetch_memory"
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(document))
    assert run_mnemo(["spec", "check", "--spec", str(path)]) == EXIT_FAILURE
    assert ("missing          POST /memories 200 link GetMemory: operationId fetch_memory names no "
            "operation") in capsys.readouterr().out


def test_spec_check_exits_1_on_an_invalid_document_and_2_on_one_it_cannot_read(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("openapi: 3.1.0\npaths: {}\n")
    assert run_mnemo(["spec", "check", "--spec", str(broken)]) == EXIT_FAILURE
    assert "is not valid" in capsys.readouterr().out and "'info' is a required property"
    assert run_mnemo(["spec", "check", "--spec", str(tmp_path / "absent.yaml")]) == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err


def test_spec_scaffold_exits_1_when_a_stub_has_nowhere_to_go(tmp_path, capsys):
    document = copy.deepcopy(Contract.load().document)
    document["paths"]["/x"] = {"get": {"operationId": "x", "responses": ANSWER,
                                       "x-openapi-router-controller": "no_such_package.x"}}
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(document))
    assert run_mnemo(["spec", "scaffold", "--spec", str(path)]) == EXIT_FAILURE
    assert "package no_such_package does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [[], ["serve"], ["migrate"], ["export"], ["import"], ["import-agno"],
                                  ["spec"], ["spec", "check"], ["spec", "scaffold"]])
def test_every_verb_explains_itself_with_help_and_exits_0(verb, capsys):
    assert run_mnemo([*verb, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"Usage: mnemo {' '.join(verb)}".rstrip())


@pytest.mark.parametrize("arguments", [["nonsense"], ["spec"], ["serve", "--port", "x"],
                                       ["migrate", "extra"]])
def test_wrong_usage_exits_2(arguments, capsys):
    assert run_mnemo(arguments) == EXIT_USAGE


def test_mnemo_help_documents_the_exit_codes(capsys):
    assert run_mnemo(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 success; 1 the command could not do its job" in out
    assert "2 wrong usage or configuration" in out


def test_spec_run_in_a_checkout_reads_its_document_and_writes_stubs_into_its_handlers(tmp_path):
    # Installed with `pip install .`, the document and handlers mnemo ships are not the ones
    # being worked on: the current directory's are.
    missing = f"pong_{uuid.uuid4().hex[:10]}"
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "__init__.py").write_text("")
    (tmp_path / "handlers" / "ping.py").write_text('def ping():\n    return {"pong": True}, 200\n')
    document = {"openapi": "3.1.0", "info": {"title": "pings", "version": "1"}, "paths": {
        "/ping": {"get": {"operationId": "ping", "x-openapi-router-controller": "handlers.ping",
                          "responses": ANSWER}},
        "/pong": {"get": {"operationId": "pong", "x-openapi-router-controller": f"handlers.{missing}",
                          "responses": ANSWER}}}}
    (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(document))

    def spec(verb: str) -> subprocess.CompletedProcess:
        return subprocess.run([*mnemo_command(), "spec", verb], cwd=tmp_path, env=server_env(),
                              capture_output=True, text=True)

    try:
        checked = spec("check")
        assert checked.returncode == EXIT_FAILURE, checked.stderr
        assert checked.stdout.startswith(f"{tmp_path / 'openapi.yaml'}: valid OpenAPI 3.1.0\n")
        assert "  ok               GET /ping -> handlers.ping.ping\n" in checked.stdout
        assert f"  missing          GET /pong -> handlers.{missing}.pong: module " in checked.stdout
        scaffolded = spec("scaffold")
        assert scaffolded.returncode == 0, scaffolded.stderr
        assert scaffolded.stdout == (f"{tmp_path / 'openapi.yaml'}: valid OpenAPI 3.1.0\n"
                                     f"{tmp_path / 'handlers' / missing}.py: stubbed pong (each answers "
                                     "501 until implemented)\n")
        assert (tmp_path / "handlers" / f"{missing}.py").exists()
    finally:
        assert not (ROOT / "handlers" / f"{missing}.py").exists()


def test_a_reader_that_goes_away_ends_the_command_with_exit_code_1_and_no_traceback():
    # What `mnemo spec check | head -3` does, at the worst moment: the reader is gone before
    # the first line is written.
    process = subprocess.Popen([*mnemo_command(), "spec", "check"], cwd=ROOT, env=server_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait() == EXIT_FAILURE
    assert err == ""
