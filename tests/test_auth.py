"""The security key: every memory operation needs it once it is set; /health and /docs never do."""

from __future__ import annotations

import logging

import pytest

from mnemo.app import create_app

from .conftest import make_settings
from .test_databases_and_errors import OPERATIONS

KEY = "s3cret-ключ"


@pytest.fixture
def locked_client(catalog, table_name):
    app = create_app(make_settings(table_name, security_key=KEY), catalog=catalog)
    with app.test_client() as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0", "Bearer", KEY])
def test_with_a_security_key_every_memory_operation_needs_the_bearer_key(
    locked_client, method, path, body, authorization
):
    headers = {"Authorization": authorization.encode()} if authorization else {}
    response = locked_client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS)
def test_the_right_bearer_key_is_let_through(locked_client, method, path, body):
    response = locked_client.request(method, path, json=body,
                                     headers={"Authorization": f"Bearer {KEY}".encode()})
    assert response.status_code != 401


def test_a_refused_request_changes_nothing(locked_client):
    locked_client.post("/memories", json={"memory": "x", "user_id": "u"})
    listed = locked_client.get("/memories", headers={"Authorization": f"Bearer {KEY}".encode()})
    assert listed.json()["meta"]["total_count"] == 0


def test_health_docs_and_the_document_stay_open(locked_client):
    assert locked_client.get("/health").json() == {"status": "ok"}
    assert locked_client.get("/docs/").status_code == 200
    assert locked_client.get("/openapi.json").status_code == 200


def test_without_a_key_the_api_is_open_and_the_server_warns(catalog, table_name, caplog):
    with caplog.at_level(logging.WARNING, logger="mnemo"):
        app = create_app(make_settings(table_name), catalog=catalog)
    assert "open to anyone" in caplog.text
    with app.test_client() as client:
        assert client.get("/memories").status_code == 200


def test_an_app_that_serves_no_http_does_not_warn_that_its_api_is_open(catalog, table_name, caplog):
    # mnemo mcp over stdio builds the app only to run its handlers, for the administrator.
    with caplog.at_level(logging.WARNING, logger="mnemo"):
        create_app(make_settings(table_name), catalog=catalog, serves_http=False)
    assert "open to anyone" not in caplog.text


def test_os_security_key_is_honoured_as_in_agno():
    from mnemo.config import Settings

    assert Settings.from_env({"OS_SECURITY_KEY": "k"}).security_key == "k"
    assert Settings.from_env({"OS_SECURITY_KEY": "k", "MNEMO_SECURITY_KEY": "m"}).security_key == "m"
    assert Settings.from_env({}).security_key is None
