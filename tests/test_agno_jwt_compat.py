"""Side by side with a real Agno AgentOS checking JWTs (with user isolation on): the same tokens
get the same verdicts, and a user's token reaches the same memories on both."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from .conftest import mnemo_command, server_env, start_server, stop_server
from .tokens import ADMIN, ALL_USER_SCOPES, READ, bearer, rs256, rsa_keys

HERE = Path(__file__).resolve().parent
DB_ID = "compat"


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """Send one request to Agno AgentOS and to Mnemo, both trusting the test issuer's key."""
    directory = tmp_path_factory.mktemp("jwt-compat")
    key = rsa_keys().public_pem
    agno, agno_base = start_server(
        [sys.executable, str(HERE / "agno_os_server.py"), "{port}", f"{DB_ID}={directory}/agno.db"],
        server_env(JWT_VERIFICATION_KEY=key))
    mnemo, mnemo_base = start_server(
        [*mnemo_command(), "serve", "--port", "{port}", "--workers", "1"],
        server_env(MNEMO_DATABASE_URL=f"sqlite:///{directory}/mnemo.db", MNEMO_DB_ID=DB_ID,
                   MNEMO_TABLE="agno_memories", JWT_VERIFICATION_KEY=key))

    def send(method: str, path: str, **kwargs) -> tuple[httpx.Response, httpx.Response]:
        return tuple(httpx.request(method, base + path, timeout=30, **kwargs)
                     for base in (agno_base, mnemo_base))

    send.bases = (agno_base, mnemo_base)
    yield send
    stop_server(agno)
    stop_server(mnemo)


def statuses(answers) -> tuple[int, int]:
    return tuple(answer.status_code for answer in answers)


# Each credential is made when its test runs: times in tokens are relative to the test.
VERDICTS = {
    "no token": (lambda: {}, 401),
    "garbage": (lambda: {"Authorization": "Bearer a.b.c"}, 401),
    "another issuer's key": (lambda: bearer(rs256(keys=rsa_keys("stranger"))), 401),
    "expired": (lambda: bearer(rs256(exp=int(time.time()) - 60)), 401),
    "not valid yet": (lambda: bearer(rs256(nbf=int(time.time()) + 120)), 401),
    "read scope, reading": (lambda: bearer(rs256(scopes=[READ])), 200),
    "admin": (lambda: bearer(rs256(scopes=[ADMIN])), 200),
}


@pytest.mark.parametrize("name", VERDICTS)
def test_the_same_token_gets_the_same_verdict_on_a_read(both, name):
    headers, expected = VERDICTS[name]
    assert statuses(both("GET", "/memories", headers=headers())) == (expected, expected), name


def test_a_token_without_the_write_scope_is_403_on_both(both):
    answers = both("POST", "/memories", json={"memory": "x", "user_id": "alice"},
                   headers=bearer(rs256(scopes=[READ])))
    assert statuses(answers) == (403, 403)


def test_a_users_token_reaches_only_its_own_memories_on_both(both):
    admin = bearer(rs256(sub="root", scopes=[ADMIN]))
    carol = bearer(rs256(sub="carol", scopes=ALL_USER_SCOPES))
    daves = both("POST", "/memories", headers=admin, json={"memory": "dave's", "user_id": "dave"})
    own = both("POST", "/memories", headers=carol, json={"memory": "mine", "user_id": "dave"})
    assert [answer.json()["user_id"] for answer in own] == ["carol", "carol"]
    listed = both("GET", "/memories?user_id=dave", headers=carol)
    assert [[m["user_id"] for m in answer.json()["data"]] for answer in listed] == [["carol"], ["carol"]]
    for base, dave in zip(both.bases, daves, strict=True):
        memory_id = dave.json()["memory_id"]
        assert httpx.get(f"{base}/memories/{memory_id}", headers=carol).status_code == 404
        httpx.delete(f"{base}/memories/{memory_id}", headers=carol)
        assert httpx.get(f"{base}/memories/{memory_id}", headers=admin).status_code == 200


def test_a_token_without_exp_never_expires_on_agno_and_is_refused_by_mnemo(both):
    forever = jwt.encode({"sub": "alice", "scopes": [READ]}, rsa_keys().private_pem, algorithm="RS256")
    assert statuses(both("GET", "/memories", headers=bearer(forever))) == (200, 401)
