"""Bounded request heads and tokens: a head (request line and headers) over the limit is 431,
a URL over it 414, both answered while the head is still arriving; a bearer token over its limit
is 401 without being decoded; and whatever the HTTP server answers on its own, before the app
sees a request, is the contract's JSON error."""

from __future__ import annotations

import pytest

from mnemo.config import ConfigError, JwtConfig, ServerLimits, Settings

from .conftest import error_json, mnemo_command, server_env, start_server, stop_server
from .raw_http import connect, port_of, read_answer, send_quietly
from .tokens import bearer, rs256, rsa_keys

HEAD_LIMIT = 4096


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    """One `mnemo serve` for the module (what is tested happens before any database is used)."""
    directory = tmp_path_factory.mktemp("heads")
    env = server_env(MNEMO_DATABASE_URL=f"sqlite:///{directory}/memories.db",
                     MNEMO_MAX_HEADER_BYTES=str(HEAD_LIMIT))
    process, base = start_server([*mnemo_command(), "serve", "--workers", "1", "--port", "{port}"],
                                 env, cwd=directory)
    yield port_of(base)
    stop_server(process)


def exchange(port: int, request: bytes):
    with connect(port) as sock:
        send_quietly(sock, request)
        return read_answer(sock)


def assert_server_error(answer, status: int, error_code: str) -> None:
    """The contract's error body, with the request id its header carries, and the connection
    closed after it."""
    assert answer is not None, "no answer"
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body.pop("request_id") == answer.headers["x-request-id"]
    assert set(body) == {"detail", "error_code"} and body["error_code"] == error_code, body
    assert "server" not in answer.headers
    assert answer.closed


def test_a_head_over_the_limit_is_431_while_it_is_still_arriving(port):
    # The head never ends: the answer comes once the limit is passed, not after the blank line.
    answer = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * (2 * HEAD_LIMIT))
    assert_server_error(answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")


def test_a_whole_head_over_the_limit_is_431(port):
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 500) for n in range(10))
    answer = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
    assert_server_error(answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")


def test_a_url_over_the_limit_is_414(port):
    answer = exchange(port, b"GET /health?pad=" + b"a" * (2 * HEAD_LIMIT) + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert_server_error(answer, 414, "URI_TOO_LONG")


def test_a_head_within_the_limit_is_served(port):
    answer = exchange(port, b"GET /health?pad=" + b"u" * 1000 + b" HTTP/1.1\r\nHost: t\r\nX-Pad: "
                      + b"a" * 2000 + b"\r\nConnection: close\r\n\r\n")
    assert answer is not None and answer.status == 200 and answer.json() == {"status": "ok"}


@pytest.mark.parametrize("request_bytes", [
    b"FROB /health HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /memories HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n",
    b"POST /memories HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /health HTTP/1.1\r\nBad Header: x\r\n\r\n",
], ids=["unknown method", "bad content-length", "two content-lengths", "raw non-ASCII path",
        "space in a header name"])
def test_what_the_http_server_refuses_itself_is_a_json_400(port, request_bytes):
    assert_server_error(exchange(port, request_bytes), 400, "BAD_REQUEST")


def test_a_websocket_upgrade_is_answered_by_the_app_in_the_error_shape(port):
    # The API has no WebSocket routes: uvicorn's own handshake refused the upgrade with a bare
    # text 403; the app refuses it as a request it cannot read.
    answer = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert_server_error(answer, 400, "BAD_REQUEST")


# -- tokens ----------------------------------------------------------------------------------

def test_a_token_over_the_limit_is_401_without_being_decoded(client_with, monkeypatch):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem))
    decoded = []
    monkeypatch.setattr("jwt.decode", lambda token, *a, **k: decoded.append(token))
    huge = rs256(sub="alice", note="x" * 10_000)  # well signed, and over the default 8 KiB
    response = client.get("/memories", headers=bearer(huge))
    assert response.status_code == 401
    assert error_json(response) == {"detail": "The token is longer than 8192 bytes",
                                    "error_code": "UNAUTHENTICATED"}
    assert decoded == []


def test_a_token_within_the_limit_is_checked_as_ever(client_with):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem), max_token_bytes=2048)
    assert client.get("/memories", headers=bearer(rs256(sub="alice", note="x" * 500))).status_code == 200
    assert client.get("/memories", headers=bearer(rs256(sub="alice", note="x" * 2000))).status_code == 401


# -- configuration ---------------------------------------------------------------------------

def test_head_token_and_time_limits_come_from_the_environment():
    default = Settings.from_env({})
    assert default.server == ServerLimits(max_header_bytes=65536, header_timeout_s=10, body_timeout_s=30)
    assert default.max_token_bytes == 8192
    settings = Settings.from_env({"MNEMO_MAX_HEADER_BYTES": "16384", "MNEMO_HEADER_TIMEOUT": "2.5",
                                  "MNEMO_BODY_TIMEOUT": "60", "MNEMO_MAX_TOKEN_BYTES": "4096"})
    assert settings.server == ServerLimits(16384, 2.5, 60)
    assert settings.max_token_bytes == 4096


@pytest.mark.parametrize(("env", "message"), [
    ({"MNEMO_MAX_HEADER_BYTES": "512"}, "MNEMO_MAX_HEADER_BYTES must be at least 1024"),
    ({"MNEMO_MAX_HEADER_BYTES": "big"}, "MNEMO_MAX_HEADER_BYTES must be a whole number"),
    ({"MNEMO_HEADER_TIMEOUT": "0"}, "MNEMO_HEADER_TIMEOUT must be a number of seconds above 0"),
    ({"MNEMO_BODY_TIMEOUT": "soon"}, "MNEMO_BODY_TIMEOUT must be a number of seconds"),
    ({"MNEMO_MAX_TOKEN_BYTES": "0"}, "MNEMO_MAX_TOKEN_BYTES must be at least 1"),
])
def test_an_unusable_head_token_or_time_limit_is_refused_with_a_message(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
