"""The edge: body limit (413), CORS, request ids, and answers that never show internals. The rate
limit (429) is in test_rate_limit.py."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import orjson
import pytest

from mnemo.config import ConfigError, JwtConfig, RateLimit, Settings
from mnemo.edge import RequestId

from .conftest import error_json
from .tokens import bearer, rs256, rsa_keys

# -- 413 -------------------------------------------------------------------------------------

def test_a_body_over_the_limit_is_413_before_it_is_read(client_with):
    client = client_with(max_body_bytes=100)
    body = {"memory": "x" * 200, "user_id": "u"}
    response = client.post("/memories", json=body)
    assert response.status_code == 413
    assert error_json(response) == {"detail": "The request body is larger than 100 bytes",
                                    "error_code": "PAYLOAD_TOO_LARGE"}
    assert client.get("/memories").json()["meta"]["total_count"] == 0


def test_a_body_streamed_without_content_length_is_counted_as_it_arrives(client_with):
    client = client_with(max_body_bytes=100)
    def chunks():
        yield from [b"x" * 10] * 50

    response = client.post("/memories", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert error_json(response)["error_code"] == "PAYLOAD_TOO_LARGE"
    assert client.get("/memories").json()["meta"]["total_count"] == 0


def test_a_body_within_the_limit_goes_through_with_or_without_content_length(client_with):
    client = client_with(max_body_bytes=100)
    assert client.post("/memories", json={"memory": "short", "user_id": "u"}).status_code == 200
    chunked = client.post("/memories", content=iter([b'{"memory": "in chunks", ', b'"user_id": "u"}']),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 200, chunked.text
    assert client.request("DELETE", "/memories", json={"memory_ids": ["a"]}).status_code == 204


def test_the_default_body_limit_is_one_mebibyte(client_with):
    client = client_with()
    ids = [f"{i:0>250}" for i in range(1000)]  # a valid bulk delete of about 250 KB
    assert client.request("DELETE", "/memories", json={"memory_ids": ids}).status_code == 204
    big = b'{"memory_ids": ["' + b"x" * (1024 * 1024) + b'"]}'
    response = client.request("DELETE", "/memories", content=big,
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413


# -- CORS ------------------------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


def test_cors_is_off_unless_configured(client_with):
    client = client_with()
    response = client.get("/memories", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in client.options("/memories", headers=PREFLIGHT).headers


def test_configured_origins_may_call_with_a_bearer_token(client_with):
    client = client_with(cors_origins=("https://app.example",), security_key="k")
    preflight = client.options("/memories", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    # Refusals carry the CORS headers too, so the page can read why.
    refused = client.get("/memories", headers={"Origin": "https://app.example"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in refused.headers["access-control-expose-headers"].lower()
    other = client.options("/memories", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# -- request ids -----------------------------------------------------------------------------

def test_every_answer_carries_a_request_id_and_errors_repeat_it(client):
    ok = client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", ok.headers["X-Request-ID"])
    missing = client.get("/memories/nope")
    assert missing.status_code == 404
    assert missing.json()["request_id"] == missing.headers["X-Request-ID"] != ok.headers["X-Request-ID"]


def test_a_sane_request_id_from_the_client_is_kept_and_an_odd_one_replaced(client):
    kept = client.get("/memories/nope", headers={"X-Request-ID": "trace-1234:abc"})
    assert kept.headers["X-Request-ID"] == "trace-1234:abc" == kept.json()["request_id"]
    for odd in ("with space", "x" * 129, "<script>", ""):
        replaced = client.get("/memories/nope", headers={"X-Request-ID": odd})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])


def test_every_answer_is_logged_under_its_request_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="mnemo"):
        client.get("/memories/nope", headers={"X-Request-ID": "find-me-42"})
        client.get("/memories", params={"limit": 0}, headers={"X-Request-ID": "find-me-43"})
    assert re.search(r"GET /memories/\{memory_id\} 404 .* request_id=find-me-42", caplog.text)
    assert re.search(r"GET /memories 422 .* request_id=find-me-43", caplog.text)


def test_a_path_cannot_forge_log_lines(client, caplog):
    with caplog.at_level(logging.INFO, logger="mnemo"):
        client.get("/memories/x%0arequest forged: GET / answered 200")
    assert "\nrequest forged" not in caplog.text
    assert "/memories/x%0Arequest%20forged:%20GET%20/%20answered%20200" in caplog.text


def test_whatever_escapes_every_handler_is_a_json_500_with_the_request_id(caplog):
    async def broken(scope, receive, send):
        raise RuntimeError("/srv/secret.py exploded")

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [(b"x-request-id", b"r-9")]}
    with caplog.at_level(logging.INFO, logger="mnemo"):
        asyncio.run(RequestId(broken)(scope, None, send))
    assert sent[0]["status"] == 500 and (b"x-request-id", b"r-9") in sent[0]["headers"]
    assert orjson.loads(sent[1]["body"]) == {"detail": "Internal server error",
                                             "error_code": "INTERNAL_SERVER_ERROR", "request_id": "r-9"}
    assert "request r-9: GET /x failed" in caplog.text and "exploded" in caplog.text


def test_errors_raised_at_the_edge_carry_the_request_id_too(client_with):
    client = client_with(max_body_bytes=10, security_key="k")
    for response in (client.post("/memories", json={"memory": "long enough"}, headers={"X-Request-ID": "r1"}),
                     client.get("/memories", headers={"X-Request-ID": "r1"}),
                     client.get("/memories/%0a", headers={"X-Request-ID": "r1"})):
        assert response.status_code in (401, 413, 422)
        assert response.json()["request_id"] == response.headers["X-Request-ID"] == "r1"


# -- no internals --------------------------------------------------------------------------

INTERNALS = re.compile(
    r"traceback|\.py\b|/work/|/usr/|site-packages|sqlalchemy|psycopg|sqlite|connexion|flask|"
    r"starlette|werkzeug|uvicorn|gunicorn|pyjwt|orjson|jsonschema|\bselect\b|\binsert\b|\bfrom\b \w+ where",
    re.IGNORECASE,
)


def test_no_error_answer_shows_a_stack_trace_sql_path_or_library(client_with, repository, monkeypatch):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem), max_body_bytes=1000)
    token = bearer(rs256(sub="alice"))
    answers = [
        client.get("/memories"),
        client.get("/memories", headers={"Authorization": "Bearer a.b.c"}),
        client.get("/memories", headers=bearer(rs256(sub="alice", scopes=[]))),
        client.get("/memories/nope", headers=token),
        client.get("/memories", params={"limit": "many"}, headers=token),
        client.post("/memories", content=b"{", headers={**token, "Content-Type": "application/json"}),
        client.post("/memories", content=b"x", headers={**token, "Content-Type": "text/plain"}),
        client.post("/memories", json={"memory": "x" * 2000}, headers=token),
        client.put("/memories", headers=token),
        client.get("/nowhere", headers=token),
        client.get("/memories", params={"db_id": "other"}, headers=token),
    ]

    def explode(*_args, **_kwargs):
        raise RuntimeError("SELECT secret FROM users -- /srv/mnemo/storage/repository.py")

    monkeypatch.setattr(repository, "list", explode)
    answers.append(client.get("/memories", headers=token))
    assert sorted({a.status_code for a in answers}) == [400, 401, 403, 404, 405, 413, 415, 422, 500]
    for answer in answers:
        assert not INTERNALS.search(answer.text), answer.text
        assert set(answer.json()) == {"detail", "error_code", "request_id"}
        assert "server" not in answer.headers


# -- configuration ---------------------------------------------------------------------------

def test_edge_settings_come_from_the_environment():
    default = Settings.from_env({})
    assert (default.max_body_bytes, default.rate_limit, default.cors_origins) == (1024 * 1024, None, ())
    settings = Settings.from_env({"MNEMO_MAX_BODY_BYTES": "2048", "MNEMO_RATE_LIMIT": "100/second",
                                  "MNEMO_CORS_ORIGINS": "https://a.example, https://b.example"})
    assert settings.max_body_bytes == 2048
    assert settings.rate_limit == RateLimit(100, 1)
    assert settings.cors_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize(("env", "message"), [
    ({"MNEMO_MAX_BODY_BYTES": "lots"}, "MNEMO_MAX_BODY_BYTES must be a whole number"),
    ({"MNEMO_MAX_BODY_BYTES": "0"}, "MNEMO_MAX_BODY_BYTES must be at least 1"),
])
def test_an_unusable_edge_setting_is_refused_with_a_message(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


# -- end to end ------------------------------------------------------------------------------

def test_mnemo_serve_checks_jwts_and_limits_from_its_environment(serve):
    # One worker: the rate limit is kept per process.
    base = serve("--workers", "1", MNEMO_JWT_VERIFICATION_KEY=rsa_keys().public_pem,
                 MNEMO_MAX_BODY_BYTES="512", MNEMO_RATE_LIMIT="5/minute")
    alice = bearer(rs256(sub="alice"))
    created = httpx.post(f"{base}/memories", headers=alice, json={"memory": "m", "user_id": "bob"})
    assert created.status_code == 200 and created.json()["user_id"] == "alice"
    assert "server" not in created.headers and created.headers["x-request-id"]
    assert httpx.get(f"{base}/memories").status_code == 401
    too_big = httpx.post(f"{base}/memories", headers=alice, json={"memory": "m" * 600, "user_id": "a"})
    assert too_big.status_code == 413
    # Two of alice's five requests a minute are spent above.
    statuses = [httpx.get(f"{base}/memories", headers=alice).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
