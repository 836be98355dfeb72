"""Bounded tokens: a bearer token over its limit is 401 without being decoded."""

from __future__ import annotations

import pytest

from mnemo.config import ConfigError, JwtConfig, Settings

from .conftest import error_json
from .tokens import bearer, rs256, rsa_keys

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

def test_the_token_limit_comes_from_the_environment():
    assert Settings.from_env({}).max_token_bytes == 8192
    assert Settings.from_env({"MNEMO_MAX_TOKEN_BYTES": "4096"}).max_token_bytes == 4096


def test_an_unusable_token_limit_is_refused_with_a_message():
    with pytest.raises(ConfigError, match="MNEMO_MAX_TOKEN_BYTES must be at least 1"):
        Settings.from_env({"MNEMO_MAX_TOKEN_BYTES": "0"})
