"""Requests shaped to slip past the contract: odd paths, media types, headers, bodies, numbers
and preflights are answered by the contract's rules, in its error shape, never with a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import error_json

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
