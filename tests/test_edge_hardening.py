"""Requests shaped to slip past the contract: odd paths, media types, headers, bodies, numbers
and preflights are answered by the contract's rules, in its error shape, never with a 500."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from mnemo.workarounds.openapi31 import URIParser

from .command_line import run_mnemo
from .conftest import DB_ID, error_json, stored_memory

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
SAMPLE_PATH_PARAMETERS = {"memory_id": "m1", "user_id": "u1"}


def operations():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def body_operations():
    """(method, path with its parameters filled in) of every operation that takes a body."""
    return [(method, path.format(**SAMPLE_PATH_PARAMETERS))
            for path, method, operation in operations() if "requestBody" in operation]


def count(client) -> int:
    return client.get("/memories").json()["meta"]["total_count"]


# -- paths -------------------------------------------------------------------------------------

@pytest.mark.parametrize("security_key", [None, "k"])
def test_a_path_with_two_leading_slashes_is_not_found(client_with, security_key):
    client = client_with(security_key=security_key)
    tried = 0
    for path, method, _operation in operations():
        url = "http://testserver/" + path.format(**SAMPLE_PATH_PARAMETERS)
        response = client.request(method.upper(), url, json={"memory": "m", "user_id": "u",
                                                             "memory_ids": ["m1"]})
        assert response.status_code == 404, (method, url, response.text)
        assert error_json(response)["error_code"] == "NOT_FOUND"
        tried += 1
    assert tried >= 12
    headers = {"Authorization": "Bearer k"} if security_key else {}
    assert client.get("/memories", headers=headers).json()["meta"]["total_count"] == 0


def test_a_request_routing_did_not_match_never_reaches_a_handler(client, create):
    create(user_id="u1")
    for url in ("http://testserver//memories", "http://testserver///memories",
                "http://testserver//users/u1/memories"):
        assert client.get(url).status_code == 404
        assert client.delete(url).status_code == 404
    assert count(client) == 1


# -- identifiers -------------------------------------------------------------------------------

def patterns(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns(value)


def test_every_pattern_means_in_python_what_it_means_in_ecma_262():
    # jsonschema searches with Python's re, where $ also matches before a final newline; in
    # ECMA-262, the dialect the document's patterns are written in, it does not.
    found = sorted(set(patterns(DOCUMENT)))
    assert len(found) >= 5
    samples = ["a", "k-1", "x/y", '"' + "0" * 32 + '"', "a b"]
    for pattern in found:
        assert "\\$" not in pattern
        ecma = re.compile(pattern.replace("$", r"\Z"))
        for sample in [*samples, *(s + "\n" for s in samples), "\n"]:
            assert bool(re.search(pattern, sample)) == bool(ecma.search(sample)), (pattern, sample)


@pytest.mark.parametrize(("method", "path", "query", "body"), [
    ("POST", "/memories", {}, {"memory": "m", "user_id": "nl-user\n"}),
    ("POST", "/memories", {}, {"memory": "m", "user_id": "u", "topics": ["topic\n"]}),
    ("GET", "/memories", {"user_id": "u\n"}, None),
    ("GET", "/memories", {"agent_id": "a\n"}, None),
    ("GET", "/memories", {"team_id": "t\n"}, None),
    ("GET", "/memories", {"topics": "a\n"}, None),
    ("GET", "/memory_topics", {"user_id": "u\n"}, None),
    ("GET", "/user_memory_stats", {"user_id": "u\n"}, None),
    ("DELETE", "/memories", {}, {"memory_ids": ["m\n"]}),
    ("DELETE", "/memories", {}, {"memory_ids": ["m"], "user_id": "u\n"}),
    ("POST", "/optimize-memories", {}, {"user_id": "u\n"}),
    ("POST", "/optimize-memories", {}, {"user_id": "u", "model": "openai:m\n"}),
])
def test_an_identifier_or_topic_ending_in_a_newline_is_refused(client, method, path, query, body):
    response = client.request(method, path, params=query, json=body)
    assert response.status_code == 422, response.text
    detail = error_json(response)
    assert detail["error_code"] == "VALIDATION_ERROR"
    assert "does not match" in detail["detail"], detail
    assert count(client) == 0


def test_an_identifier_ending_in_a_newline_is_refused_in_the_erase_path_too(client):
    response = client.delete("/users/nl-user%0A/memories")
    assert response.status_code == 422
    assert error_json(response)["error_code"] == "VALIDATION_ERROR"


SLASHED_USER_IDS = ["a/b", "/a", "a/", "a//b", "/", "a/b/memories", "50%/c"]


@pytest.mark.parametrize("user_id", SLASHED_USER_IDS)
def test_a_user_id_with_slashes_is_erasable_through_the_api(client, create, user_id):
    create(user_id=user_id)
    create(user_id="a")
    create(user_id="b")
    response = client.delete(f"/users/{quote(user_id, safe='')}/memories")
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": 1}
    assert client.get("/memories", params={"user_id": user_id}).json()["data"] == []
    assert count(client) == 2


def test_a_user_id_with_a_slash_is_erasable_with_the_slash_unencoded(client, create):
    create(user_id="org/alice")
    create(user_id="org")
    response = client.delete("/users/org/alice/memories")
    assert response.json() == {"deleted": 1}
    assert [m["user_id"] for m in client.get("/memories").json()["data"]] == ["org"]


def test_an_empty_user_id_in_the_erase_path_is_refused(client):
    response = client.delete("/users//memories")
    assert response.status_code == 422
    assert error_json(response)["error_code"] == "VALIDATION_ERROR"


def test_a_stored_user_id_ending_in_a_newline_is_erased_by_mnemo_erase_user(
        client, repository, database_url, table_name, tmp_path, monkeypatch, capsys):
    # Stored before the contract refused such ids: the API can no longer name this user.
    repository.insert([stored_memory("nl1", user_id="nl-user\n", topics=["t"]),
                       stored_memory("nl2", user_id="nl-user\n"),
                       stored_memory("other", user_id="nl-user")])
    config = tmp_path / "mnemo.toml"
    config.write_text(f'[[databases]]\nid = "{DB_ID}"\nurl = "{database_url}"\n'
                      f'tables = ["{table_name}"]\n')
    monkeypatch.delenv("MNEMO_CONFIG", raising=False)
    assert run_mnemo(["erase-user", "--config", str(config), "nl-user\n"]) == 0
    assert '"deleted": 2' in capsys.readouterr().out
    assert [m["memory_id"] for m in client.get("/memories").json()["data"]] == ["other"]
    assert repository.history("nl1") == []
    assert client.get("/memory_topics").json() == []


def test_mnemo_erase_user_names_a_table_and_refuses_an_unknown_one(
        repository, database_url, table_name, tmp_path, monkeypatch, capsys):
    repository.insert([stored_memory("m1", user_id="u1")])
    config = tmp_path / "mnemo.toml"
    config.write_text(f'[[databases]]\nid = "{DB_ID}"\nurl = "{database_url}"\n'
                      f'tables = ["{table_name}"]\n')
    monkeypatch.delenv("MNEMO_CONFIG", raising=False)
    assert run_mnemo(["erase-user", "--config", str(config), "--db-id", DB_ID, "--table", "nope", "u1"]) == 2
    assert "nope" in capsys.readouterr().err
    assert run_mnemo(["erase-user", "--config", str(config), "--db-id", DB_ID, "--table", table_name,
                 "u1"]) == 0
    assert repository.get("m1") is None


# -- media types -------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; charset=UTF-8",
                                          "application/JSON;charset=utf-8"])
def test_a_media_type_is_read_whatever_its_case(client, create, content_type):
    headers = {"Content-Type": content_type}
    created = client.post("/memories", content=b'{"memory": "m", "user_id": "u", "topics": ["t"]}',
                          headers=headers)
    assert created.status_code == 200, created.text
    assert created.json()["topics"] == ["t"]
    memory_id = created.json()["memory_id"]
    updated = client.patch(f"/memories/{memory_id}", headers=headers,
                           content=b'{"memory": "n", "user_id": "u", "topics": []}')
    assert (updated.status_code, updated.json()["memory"]) == (200, "n")
    invalid = client.post("/memories", content=b'{"memory": ""}', headers=headers)
    assert invalid.status_code == 422
    assert error_json(invalid)["detail"].startswith("body.memory:")
    deleted = client.request("DELETE", "/memories", headers=headers,
                             content=f'{{"memory_ids": ["{memory_id}"]}}'.encode())
    assert deleted.status_code == 204
    assert count(client) == 0


@pytest.mark.parametrize(("method", "path"), body_operations())
def test_every_body_taking_operation_answers_an_upper_case_media_type_as_the_lower_case_one(
        client, create, method, path):
    create(user_id="u1")
    body = b'{"memory": "m", "user_id": "u1", "memory_ids": ["nope"]}'
    lower = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    upper = client.request(method, path, content=body, headers={"Content-Type": "APPLICATION/JSON"})
    assert upper.status_code == lower.status_code < 500, upper.text


# -- duplicate headers -------------------------------------------------------------------------

@pytest.mark.parametrize("second", ["application/json", "text/plain"])
def test_two_content_type_headers_are_a_bad_request(client, second):
    response = client.post("/memories", content=b'{"memory": "m", "user_id": "u"}',
                           headers=[("Content-Type", "application/json"), ("Content-Type", second)])
    assert response.status_code == 400, response.text
    assert error_json(response) == {"detail": "Content-Type must be given at most once",
                                    "error_code": "BAD_REQUEST"}
    assert count(client) == 0


# -- JSON depth --------------------------------------------------------------------------------

def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(("method", "path"), body_operations())
def test_a_body_nested_too_deep_is_refused(client, method, path):
    for depth in (40, 1000, 1023, 1100):
        for field in (b"topics", b"memory_ids", b"unknown"):
            body = b'{"memory": "m", "user_id": "u", "' + field + b'": ' + nested(depth) + b"}"
            response = client.request(method, path, content=body,
                                      headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (depth, field, response.text)
            assert error_json(response)["error_code"] == "INVALID_JSON"
    assert count(client) == 0


def test_a_body_nested_32_levels_is_read_and_33_refused(client):
    def body(depth):
        return b'{"memory": "m", "user_id": "u", "extra": ' + nested(depth - 1) + b"}"

    headers = {"Content-Type": "application/json"}
    assert client.post("/memories", content=body(32), headers=headers).status_code == 200
    refused = client.post("/memories", content=body(33), headers=headers)
    assert error_json(refused) == {"detail": "body: JSON nested deeper than 32 levels",
                                   "error_code": "INVALID_JSON"}


def test_a_body_is_parsed_once_by_the_validator_and_handed_to_the_handler(client, monkeypatch, app):
    def second_parse(*_args, **_kwargs):
        raise AssertionError("the body was parsed a second time")

    monkeypatch.setattr(app.app.json, "loads", second_parse)
    created = client.post("/memories", json={"memory": "m", "user_id": "u", "topics": ["t"]})
    assert created.status_code == 200, created.text
    assert created.json()["topics"] == ["t"]


# -- integers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("limit", "5_0"), ("limit", "\u0665"), ("limit", "+5"), ("limit", " 5"), ("limit", "5 "),
    ("limit", "\uff15"), ("page", "1_0"), ("page", "\u0661"),
])
def test_an_integer_parameter_takes_ascii_digits_only(client, create, name, value):
    create()
    response = client.get("/memories", params={name: value})
    assert response.status_code == 422, response.text
    assert error_json(response) == {
        "detail": f"query parameter '{name}': {value!r} is not of type 'integer'",
        "error_code": "VALIDATION_ERROR"}
    assert client.get("/memories", params={name: "many"}).json()["detail"] == (
        f"query parameter '{name}': 'many' is not of type 'integer'")


def test_an_integer_parameter_in_ascii_digits_is_read(client, create):
    for _ in range(3):
        create()
    assert len(client.get("/memories", params={"limit": "02"}).json()["data"]) == 2
    negative = client.get("/memories", params={"limit": "-5"})
    assert error_json(negative)["detail"] == "query parameter 'limit': -5 is less than the minimum of 1"


def test_an_integer_path_parameter_or_array_item_takes_ascii_digits_only():
    definitions = [{"name": "n", "in": "path", "schema": {"type": "integer"}},
                   {"name": "q", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}}]
    parser = URIParser(definitions, {})
    assert parser.resolve_path({"n": "5_0"}) == {"n": "5_0"}
    assert parser.resolve_path({"n": "-12"}) == {"n": -12}
    assert parser.resolve_query({"q": ["1", "\u0662", "3"]}) == {"q": [1, "\u0662", 3]}


# -- CORS --------------------------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


@pytest.mark.parametrize(("changed", "detail"), [
    ({"Origin": "https://evil.example"}, "Disallowed CORS origin"),
    ({"Access-Control-Request-Method": "PUT"}, "Disallowed CORS method"),
    ({"Access-Control-Request-Headers": "x-secret"}, "Disallowed CORS headers"),
])
def test_a_rejected_preflight_answers_the_error_shape(client_with, changed, detail):
    client = client_with(cors_origins=("https://app.example",))
    response = client.options("/memories", headers={**PREFLIGHT, **changed,
                                                     "X-Request-ID": "preflight-1"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": detail, "error_code": "CORS_REJECTED",
                               "request_id": "preflight-1"}
    assert response.headers["x-request-id"] == "preflight-1"
    assert "Origin" in response.headers["vary"]
    accepted = client.options("/memories", headers=PREFLIGHT)
    assert accepted.status_code == 200
    assert accepted.headers["access-control-allow-origin"] == "https://app.example"
