"""JWTs as Agno AgentOS issues them: who may call (401), what each scope allows (403)."""

from __future__ import annotations

import time

import jwt
import pytest

from mnemo.config import ConfigError, JwtConfig, Settings

from .conftest import error_json
from .tokens import (
    ADMIN,
    ALL_USER_SCOPES,
    DELETE,
    HS_SECRET,
    READ,
    WRITE,
    bearer,
    claims,
    ec_keys,
    hand_signed,
    rs256,
    rsa_keys,
)

SECURITY_KEY = "the-security-key"


@pytest.fixture
def rs_client(client_with):
    return client_with(jwt=JwtConfig(rsa_keys().public_pem))


def admin_create(client, headers, user_id="alice", memory="likes tea", topics=("drinks",)):
    response = client.post("/memories", json={"memory": memory, "user_id": user_id, "topics": list(topics)},
                           headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# -- 401: anything that is not a valid token -------------------------------------------------

def now() -> int:
    return int(time.time())


def abusive_tokens():
    """(name, Authorization header) pairs that a server trusting the issuer's RS256 key refuses."""
    issuer, stranger = rsa_keys(), rsa_keys("stranger")
    payload = claims("alice", ALL_USER_SCOPES)
    valid = rs256()
    head, body, signature = valid.split(".")
    forged_body = hand_signed({"alg": "RS256"}, claims("mallory", [ADMIN]), None).split(".")[1]
    return [
        ("no header", None),
        ("empty bearer", "Bearer "),
        ("basic scheme", "Basic YWxpY2U6c2VjcmV0"),
        ("token without scheme", valid),
        ("garbage", "Bearer not-a-jwt"),
        ("three garbage parts", "Bearer aaa.bbb.ccc"),
        ("non-ascii", "Bearer ключ.ключ.ключ"),
        ("signed by another key", f"Bearer {rs256(keys=stranger)}"),
        ("payload swapped under a valid signature", f"Bearer {head}.{forged_body}.{signature}"),
        ("signature stripped", f"Bearer {head}.{body}."),
        ("expired", f"Bearer {rs256(exp=now() - 60)}"),
        ("no exp", f"Bearer {jwt.encode({'sub': 'alice', 'scopes': [ADMIN]}, issuer.private_pem, 'RS256')}"),
        ("not valid yet", f"Bearer {rs256(nbf=now() + 120)}"),
        ("alg none", f"Bearer {hand_signed({'alg': 'none', 'typ': 'JWT'}, payload, None)}"),
        ("alg none via PyJWT", f"Bearer {jwt.encode(payload, None, algorithm='none')}"),
        ("HS256 signed with the RSA public key",
         f"Bearer {hand_signed({'alg': 'HS256', 'typ': 'JWT'}, payload, issuer.public_pem.encode())}"),
        ("ES256 instead of RS256", f"Bearer {jwt.encode(payload, ec_keys().private_pem, 'ES256')}"),
        ("PS256 instead of RS256", f"Bearer {jwt.encode(payload, issuer.private_pem, 'PS256')}"),
        ("sub that is a number", f"Bearer {rs256_with_sub(42)}"),
        ("sub with a control character", "Bearer " + rs256_with_sub("alice\nadmin")),
        ("sub too long", f"Bearer {rs256_with_sub('x' * 256)}"),
    ]


def rs256_with_sub(sub) -> str:
    return jwt.encode({**claims(None, [ADMIN]), "sub": sub}, rsa_keys().private_pem, algorithm="RS256")


@pytest.mark.parametrize("name", [name for name, _ in abusive_tokens()])
def test_a_missing_malformed_expired_or_wrongly_signed_token_is_401(rs_client, name):
    # Made now, not when the tests were collected: times in tokens are relative to the test.
    authorization = dict(abusive_tokens())[name]
    headers = {"Authorization": authorization.encode()} if authorization is not None else {}
    for method, path in (("GET", "/memories"), ("POST", "/memories"), ("DELETE", "/memories/x")):
        body = {"memory": "x", "user_id": "alice"} if method == "POST" else None
        response = rs_client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (name, response.text)
        assert error_json(response)["error_code"] == "UNAUTHENTICATED"
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_refused_token_changes_nothing(rs_client):
    rs_client.post("/memories", json={"memory": "x", "user_id": "alice"},
                   headers=bearer(rs256(keys=rsa_keys("stranger"))))
    listed = rs_client.get("/memories", headers=bearer(rs256(scopes=[ADMIN])))
    assert listed.json()["meta"]["total_count"] == 0


def test_clock_skew_of_a_few_seconds_is_tolerated(rs_client):
    for token in (rs256(exp=now() - 3), rs256(nbf=now() + 3)):
        assert rs_client.get("/memories", headers=bearer(token)).status_code == 200


def test_with_an_audience_configured_only_tokens_for_it_pass(client_with):
    client = client_with(jwt=JwtConfig(rsa_keys().public_pem, audience="mnemo"))
    assert client.get("/memories", headers=bearer(rs256(aud="mnemo"))).status_code == 200
    assert client.get("/memories", headers=bearer(rs256(aud=["other", "mnemo"]))).status_code == 200
    for token in (rs256(aud="other"), rs256(aud=["other"]), rs256()):
        response = client.get("/memories", headers=bearer(token))
        assert response.status_code == 401, response.text


def test_hs256_verifies_with_the_shared_secret_and_refuses_rs256_tokens(client_with):
    client = client_with(jwt=JwtConfig(HS_SECRET, algorithm="HS256"))
    good = jwt.encode(claims("alice", [READ]), HS_SECRET, algorithm="HS256")
    assert client.get("/memories", headers=bearer(good)).status_code == 200
    assert client.get("/memories", headers=bearer(rs256())).status_code == 401
    wrong = jwt.encode(claims("alice", [READ]), HS_SECRET + "?", algorithm="HS256")
    assert client.get("/memories", headers=bearer(wrong)).status_code == 401


def test_es256_verifies_with_an_ec_public_key(client_with):
    client = client_with(jwt=JwtConfig(ec_keys().public_pem, algorithm="ES256"))
    good = jwt.encode(claims("alice", [READ]), ec_keys().private_pem, algorithm="ES256")
    assert client.get("/memories", headers=bearer(good)).status_code == 200
    assert client.get("/memories", headers=bearer(rs256())).status_code == 401


# -- 403: valid token, not allowed ---------------------------------------------------------

# Each operation, what it needs (as Agno AgentOS maps them), and the answer when allowed.
OPERATIONS = {
    "create_memory": ("POST", "/memories", WRITE, 200),
    "get_memories": ("GET", "/memories", READ, 200),
    "delete_memories": ("DELETE", "/memories", DELETE, 204),
    "get_memory": ("GET", "/memories/{id}", READ, 200),
    "update_memory": ("PATCH", "/memories/{id}", WRITE, 200),
    "delete_memory": ("DELETE", "/memories/{id}", DELETE, 204),
    "get_memory_topics": ("GET", "/memory_topics", READ, 200),
    "get_user_memory_stats": ("GET", "/user_memory_stats", READ, 200),
    "get_memory_history": ("GET", "/memories/{id}/history", READ, 200),
    "erase_user_memories": ("DELETE", "/users/alice/memories", DELETE, 200),
    # No model is configured here: allowed, it is refused for that.
    "optimize_memories": ("POST", "/optimize-memories", WRITE, 400),
}
SCOPE_SETS = {
    "none": [],
    "read": [READ],
    "write": [WRITE],
    "delete": [DELETE],
    "read+write+delete": [READ, WRITE, DELETE],
    "admin": [ADMIN],
    "unrelated": ["agents:read", "memories:*", "memories"],
}


@pytest.mark.parametrize("scopes", SCOPE_SETS, ids=list(SCOPE_SETS))
@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_scope_allows_exactly_its_operations(rs_client, operation, scopes):
    method, path, needed, allowed_status = OPERATIONS[operation]
    granted = SCOPE_SETS[scopes]
    own = admin_create(rs_client, bearer(rs256(sub="admin", scopes=[ADMIN])))
    body = {"POST": {"memory": "x", "user_id": "alice"}, "PATCH": {"memory": "y", "user_id": "alice"},
            "DELETE": {"memory_ids": [own["memory_id"]]}}.get(method)
    if method == "DELETE" and path != "/memories":
        body = None
    response = rs_client.request(method, path.format(id=own["memory_id"]), json=body,
                                 headers=bearer(rs256(sub="alice", scopes=granted)))
    if ADMIN in granted or needed in granted:
        assert response.status_code == allowed_status, response.text
    else:
        assert response.status_code == 403, response.text
        assert error_json(response) == {"detail": f"This token lacks the scope {needed}",
                                        "error_code": "FORBIDDEN"}


def test_scopes_may_come_as_one_space_separated_string(rs_client):
    token = rs256(scopes=f"{READ} {WRITE}")
    assert rs_client.get("/memories", headers=bearer(token)).status_code == 200
    assert rs_client.delete("/memories/x", headers=bearer(token)).status_code == 403


def test_a_token_without_scopes_is_forbidden_everywhere(rs_client):
    token = jwt.encode(claims("alice", None), rsa_keys().private_pem, algorithm="RS256")
    assert rs_client.get("/memories", headers=bearer(token)).status_code == 403


def test_a_user_token_without_sub_is_forbidden_but_an_admin_token_needs_none(rs_client):
    response = rs_client.get("/memories", headers=bearer(rs256(sub=None, scopes=[READ])))
    assert response.status_code == 403
    assert error_json(response)["detail"] == "The token names no user (sub claim)"
    assert rs_client.get("/memories", headers=bearer(rs256(sub=None, scopes=[ADMIN]))).status_code == 200


# -- the security key beside JWTs ------------------------------------------------------------

def test_with_both_configured_either_the_key_or_a_jwt_is_accepted(client_with):
    client = client_with(security_key=SECURITY_KEY, jwt=JwtConfig(rsa_keys().public_pem))
    created = admin_create(client, bearer(SECURITY_KEY), user_id="bob")
    assert created["user_id"] == "bob"  # the key acts as an administrator
    assert client.get("/memories", headers=bearer(rs256(sub="alice"))).json()["data"] == []
    assert client.get("/memories", headers=bearer(rs256(scopes=[ADMIN]))).json()["meta"]["total_count"] == 1
    for wrong in ("wrong-key", rs256(keys=rsa_keys("stranger"))):
        assert client.get("/memories", headers=bearer(wrong)).status_code == 401
    assert client.get("/memories").status_code == 401
    # A valid token without the scope is refused as such, not as a wrong key.
    assert client.delete("/memories/x", headers=bearer(rs256(scopes=[READ]))).status_code == 403


def test_with_only_jwt_configured_no_key_is_accepted(rs_client):
    assert rs_client.get("/memories", headers=bearer(SECURITY_KEY)).status_code == 401


def test_with_only_the_key_configured_jwts_are_not_accepted(client_with):
    client = client_with(security_key=SECURITY_KEY)
    assert client.get("/memories", headers=bearer(rs256(scopes=[ADMIN]))).status_code == 401
    assert client.get("/memories", headers=bearer(SECURITY_KEY)).status_code == 200


# -- configuration ---------------------------------------------------------------------------

def test_jwt_settings_come_from_the_environment_as_in_agno():
    pem = rsa_keys().public_pem
    assert Settings.from_env({}).jwt is None
    assert Settings.from_env({"JWT_VERIFICATION_KEY": pem}).jwt == JwtConfig(pem, "RS256", None)
    settings = Settings.from_env({"MNEMO_JWT_VERIFICATION_KEY": HS_SECRET, "JWT_VERIFICATION_KEY": pem,
                                  "MNEMO_JWT_ALGORITHM": "HS256", "MNEMO_JWT_AUDIENCE": "mnemo"})
    assert settings.jwt == JwtConfig(HS_SECRET, "HS256", "mnemo")
    # A PEM key written on one line of an environment file, its newlines as \n.
    one_line = pem.strip().replace("\n", "\\n")
    read = Settings.from_env({"MNEMO_JWT_VERIFICATION_KEY": one_line}).jwt
    assert read.verification_key.strip() == pem.strip()


@pytest.mark.parametrize(("env", "message"), [
    ({"MNEMO_JWT_VERIFICATION_KEY": "k" * 40, "MNEMO_JWT_ALGORITHM": "none"}, "is not one of"),
    ({"MNEMO_JWT_VERIFICATION_KEY": "k" * 40, "MNEMO_JWT_ALGORITHM": "RS256"}, "not a PEM public key"),
    ({"MNEMO_JWT_VERIFICATION_KEY": "short", "MNEMO_JWT_ALGORITHM": "HS256"}, "at least 32 bytes"),
    ({"MNEMO_JWT_VERIFICATION_KEY": "PUBLIC", "MNEMO_JWT_ALGORITHM": "HS256"}, None),
    ({"MNEMO_JWT_ALGORITHM": "RS256"}, "no JWT verification key"),
    ({"MNEMO_JWT_AUDIENCE": "mnemo"}, "no JWT verification key"),
])
def test_an_unusable_jwt_setting_stops_the_server_with_a_message(env, message):
    if env.get("MNEMO_JWT_VERIFICATION_KEY") == "PUBLIC":
        # HS256 with a public key as the secret: the start of every HS/RS confusion attack.
        env = {**env, "MNEMO_JWT_VERIFICATION_KEY": rsa_keys().public_pem}
        message = "not a shared secret"
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_private_key_is_refused_as_the_verification_key():
    with pytest.raises(ConfigError, match="public key, not a private one"):
        Settings.from_env({"MNEMO_JWT_VERIFICATION_KEY": rsa_keys().private_pem})


def test_the_verification_key_never_shows_in_settings_reprs():
    settings = Settings.from_env({"MNEMO_JWT_VERIFICATION_KEY": HS_SECRET, "MNEMO_JWT_ALGORITHM": "HS256",
                                  "MNEMO_SECURITY_KEY": SECURITY_KEY})
    assert HS_SECRET not in repr(settings) and SECURITY_KEY not in repr(settings)
