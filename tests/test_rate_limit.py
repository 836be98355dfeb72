"""The rate limit (429): counted per caller (the security key's holder, a JWT's user, or the
client address for anyone without valid credentials), however the credential is written, and
shared by every worker and replica when it is kept in Redis."""

from __future__ import annotations

import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client import REGISTRY

from mnemo.config import ConfigError, JwtConfig, RateLimit, Settings

from .conftest import error_json, mnemo_command, server_env, start_server, stop_server
from .tokens import ADMIN, bearer, rs256, rsa_keys

KEY = "the security key of the rate limit tests"
REDIS_URL = os.environ.get("MNEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own in the test Redis, its keys deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.skip(f"no Redis at {REDIS_URL} ({error}); set MNEMO_TEST_REDIS_URL")
    prefix = f"mnemo-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def redis_keys(prefix: str) -> list[str]:
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        return [key.decode() for key in client.scan_iter(f"{prefix}*")]


def test_past_the_limit_each_caller_gets_429_with_retry_after(client_with):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem), rate_limit=RateLimit(3, 3600))
    alice, bob = bearer(rs256(sub="alice")), bearer(rs256(sub="bob"))
    assert [client.get("/memories", headers=alice).status_code for _ in range(3)] == [200] * 3
    refused = client.get("/memories", headers=alice)
    assert refused.status_code == 429
    assert error_json(refused)["error_code"] == "TOO_MANY_REQUESTS"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    # Another caller has its own allowance, and the probes are never limited.
    assert client.get("/memories", headers=bob).status_code == 200
    assert all(client.get("/health").status_code == 200 for _ in range(5))
    assert all(client.get("/ready").status_code == 200 for _ in range(5))


def test_the_limit_holds_however_the_credential_is_written(client_with):
    client = client_with(security_key=KEY, rate_limit=RateLimit(5, 3600))
    assert [client.get("/memories", headers=bearer(KEY)).status_code for _ in range(5)] == [200] * 5
    for written in (f"bearer {KEY}", f"BEARER {KEY}", f"Bearer  {KEY}", f"Bearer {KEY} "):
        assert client.get("/memories", headers={"Authorization": written}).status_code == 429, written


def test_every_token_of_one_user_counts_against_that_user(client_with):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem), rate_limit=RateLimit(3, 3600))
    tokens = [rs256(sub="alice", jti=str(n)) for n in range(4)]
    assert [client.get("/memories", headers=bearer(t)).status_code for t in tokens] == [200, 200, 200, 429]
    assert client.get("/memories", headers=bearer(rs256(sub="bob"))).status_code == 200


def test_made_up_credentials_count_against_the_client_address(client_with):
    client = client_with(security_key=KEY, rate_limit=RateLimit(3, 3600))
    statuses = [client.get("/memories", headers=bearer(f"guess-{n}")).status_code for n in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert client.get("/memories").status_code == 429
    # The key's holder, at the same address, is a caller of its own.
    assert client.get("/memories", headers=bearer(KEY)).status_code == 200


def test_a_forged_token_cannot_spend_another_users_allowance(client_with):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem), rate_limit=RateLimit(2, 3600))
    forged = rs256(sub="alice", keys=rsa_keys("stranger"))
    assert [client.get("/memories", headers=bearer(forged)).status_code for _ in range(3)] == [401, 401, 429]
    assert client.get("/memories", headers=bearer(rs256(sub="alice"))).status_code == 200


def test_with_the_api_open_each_client_address_is_one_caller(client_with):
    client = client_with(rate_limit=RateLimit(2, 3600))
    statuses = [client.get("/memories", headers=bearer(f"any-{n}")).status_code for n in range(3)]
    assert statuses == [200, 200, 429]


def test_requests_without_credentials_share_their_client_address_allowance(client_with):
    client = client_with(rate_limit=RateLimit(2, 3600))
    assert [client.get("/memories").status_code for _ in range(3)] == [200, 200, 429]


# -- Redis -----------------------------------------------------------------------------------

def test_with_redis_every_process_counts_against_one_limit(client_with, redis_prefix):
    limit = RateLimit(4, 3600, storage=REDIS_URL, prefix=redis_prefix)
    # Two apps, each with its own limiter and connections, as two workers or replicas have.
    first, second = (client_with(security_key=KEY, rate_limit=limit) for _ in range(2))
    statuses = [client.get("/memories", headers=bearer(KEY)).status_code for client in (first, second) * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_no_stored_key_holds_a_credential_or_a_user_id(client_with, redis_prefix):
    limit = RateLimit(100, 3600, storage=REDIS_URL, prefix=redis_prefix)
    client = client_with(security_key=KEY, jwt=JwtConfig(rsa_keys().public_pem), rate_limit=limit)
    alice = rs256(sub="alice-the-user")
    admin = rs256(sub=None, scopes=[ADMIN])
    for headers in (bearer(KEY), bearer(alice), bearer(admin), bearer("made-up"), {}):
        client.get("/memories", headers=headers)
    keys = redis_keys(redis_prefix)
    assert keys
    for secret in (KEY, alice, admin, "alice-the-user", "made-up", "testclient"):
        assert not any(secret in key for key in keys), (secret, keys)


def test_without_redis_each_process_counts_on_its_own_and_says_so(client_with, caplog):
    # Nothing listens on port 1.
    limit = RateLimit(2, 3600, storage="redis://127.0.0.1:1/0", prefix="unreachable")
    client = client_with(security_key=KEY, rate_limit=limit)
    errors = REGISTRY.get_sample_value("mnemo_rate_limit_storage_errors_total") or 0
    with caplog.at_level(logging.WARNING, logger="mnemo"):
        statuses = [client.get("/memories", headers=bearer(KEY)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    warnings = [r.getMessage() for r in caplog.records if "rate limit storage" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert REGISTRY.get_sample_value("mnemo_rate_limit_storage_errors_total") > errors


@pytest.mark.slow
def test_two_workers_together_hold_the_limit(redis_prefix, tmp_path):
    env = server_env(MNEMO_DATABASE_URL=f"sqlite:///{tmp_path}/memories.db", MNEMO_SECURITY_KEY=KEY,
                     MNEMO_RATE_LIMIT="5/hour", MNEMO_RATE_LIMIT_STORAGE=REDIS_URL,
                     MNEMO_RATE_LIMIT_PREFIX=redis_prefix)
    process, base = start_server([*mnemo_command(), "serve", "--workers", "2", "--port", "{port}"],
                                 env, cwd=tmp_path)
    try:
        # A connection of its own per request, several at once: both workers take some.
        def get(_):
            return httpx.get(f"{base}/memories", headers=bearer(KEY), timeout=10).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(get, range(24)))
    finally:
        stop_server(process)
    assert sorted(statuses) == [200] * 5 + [429] * 19, statuses


# -- configuration ---------------------------------------------------------------------------

def test_rate_limit_settings_come_from_the_environment():
    assert Settings.from_env({}).rate_limit is None
    default = Settings.from_env({"MNEMO_RATE_LIMIT": "100/second"}).rate_limit
    assert default == RateLimit(100, 1, storage="memory://", prefix="mnemo")
    shared = Settings.from_env({"MNEMO_RATE_LIMIT": "5 / minute", "MNEMO_RATE_LIMIT_STORAGE": "redis://cache:6379/2",
                                "MNEMO_RATE_LIMIT_PREFIX": "staging"}).rate_limit
    assert shared == RateLimit(5, 60, storage="redis://cache:6379/2", prefix="staging")
    assert RateLimit.parse("1000/Hours") == RateLimit(1000, 3600)
    assert RateLimit.parse("7/day") == RateLimit(7, 86400)


@pytest.mark.parametrize(("env", "message"), [
    ({"MNEMO_RATE_LIMIT": "100"}, "MNEMO_RATE_LIMIT must look like 100/second"),
    ({"MNEMO_RATE_LIMIT": "0/second"}, "MNEMO_RATE_LIMIT must look like"),
    ({"MNEMO_RATE_LIMIT": "10/fortnight"}, "MNEMO_RATE_LIMIT must look like"),
    ({"MNEMO_RATE_LIMIT": "5/second", "MNEMO_RATE_LIMIT_STORAGE": "memcached://cache"},
     "MNEMO_RATE_LIMIT_STORAGE must be memory:// or a redis:// URL"),
    ({"MNEMO_RATE_LIMIT_STORAGE": "redis://cache"}, "MNEMO_RATE_LIMIT_STORAGE is set but MNEMO_RATE_LIMIT"),
])
def test_an_unusable_rate_limit_setting_is_refused_with_a_message(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
