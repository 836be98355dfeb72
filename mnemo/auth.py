"""Who is calling, and what they may do: the security key and Agno-compatible JWTs.

The document declares two alternative bearer schemes on every memory operation:
``HTTPBearer`` (the security key) and ``JWT`` (a signed token, with the scope the operation
needs written next to it). Connexion enforces them and calls the handler built here, which
answers with the caller as a dict (Connexion hands it to handlers as ``token_info``):

* the security key, compared in constant time, makes the caller an admin;
* a JWT signed with the configured key and algorithm (only that one), unexpired, already valid
  and, when an audience is configured, meant for it, makes the caller its ``sub``, with the
  token's ``scopes``. ``agent_os:admin`` grants every operation; otherwise the operation's
  scope must be among them (403 if not), and the token must name its user;
* with neither configured the API is open, every caller an admin, and the server says so.

``/metrics`` has a scheme of its own (``MetricsToken``), for the scraper: the metrics token
when one is configured, the security key, or an administrator's JWT; a user's JWT is 403 (the
metrics count every user's requests and memories). It is open only when nothing at all is
configured, like the rest of the API.

Handlers never look inside: ``owner`` tells them which user an operation applies to.

A bearer token longer than the configured limit is refused (401) without being decoded.
``Callers`` names the caller the same way, for the rate limit, which runs before Connexion.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from functools import partial

import jwt
from connexion.exceptions import ClientProblem, OAuthProblem
from connexion.security import NO_VALUE, BearerSecurityHandler

from .config import CONTROL_CHARACTERS, DEFAULT_MAX_TOKEN_BYTES, JwtConfig

log = logging.getLogger("mnemo")

ADMIN_SCOPE = "agent_os:admin"
# Clock skew allowed between the token's issuer and this server (Agno allows the same).
LEEWAY_S = 10
# A user id is an Identifier of the document: at most 255 characters, no control characters.
MAX_USER_ID = 255

OPEN_ACCESS = {"sub": None, "scopes": (ADMIN_SCOPE,), "via": "open"}
KEY_ACCESS = {"sub": None, "scopes": (ADMIN_SCOPE,), "via": "security_key"}
# The metrics token grants no scope: it opens /metrics and nothing else.
METRICS_ACCESS = {"sub": None, "scopes": (), "via": "metrics_token"}
# The vendor extension that marks the document's security scheme for /metrics.
METRICS_SCHEME = "x-mnemo-metrics"


class ForbiddenProblem(ClientProblem):
    """Authenticated, but not allowed to do this: 403."""

    def __init__(self, detail: str):
        super().__init__(status=403, title="Forbidden", detail=detail)


def is_admin(token_info: dict) -> bool:
    return ADMIN_SCOPE in token_info["scopes"]


def owner(token_info: dict, asked: str | None) -> str | None:
    """The user an operation applies to: whoever an admin names (or nobody in particular),
    and always the caller itself for anyone else, whatever it asks for."""
    return asked if is_admin(token_info) else token_info["sub"]


def bearer_security(security_key: str | None, jwt_config: JwtConfig | None = None,
                    metrics_token: str | None = None,
                    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
                    warn_if_open: bool = True) -> type[BearerSecurityHandler]:
    """A Connexion security handler for the document's bearer schemes; without credentials
    configured it warns that the API is open, unless ``warn_if_open`` is false (no HTTP is
    served: ``mnemo mcp``'s caller is the administrator by design)."""
    if security_key is None and jwt_config is None and warn_if_open:
        log.warning(
            "No security key (MNEMO_SECURITY_KEY or OS_SECURITY_KEY) and no JWT verification key "
            "(MNEMO_JWT_VERIFICATION_KEY or JWT_VERIFICATION_KEY) is set: the memory API is open "
            "to anyone who can reach this server."
        )
    expected = security_key.encode() if security_key is not None else None
    verify_jwt = JwtVerifier(jwt_config) if jwt_config is not None else None

    def with_security_key(request):
        if expected is None:
            return dict(OPEN_ACCESS) if verify_jwt is None else NO_VALUE
        if not is_secret(bearer_token(request, max_token_bytes), expected):
            raise OAuthProblem(detail="Invalid authentication token")
        return dict(KEY_ACCESS)

    metrics_expected = metrics_token.encode() if metrics_token is not None else None
    admin_only = frozenset({ADMIN_SCOPE})

    def with_metrics_credential(request):
        if expected is None and verify_jwt is None and metrics_expected is None:
            return dict(OPEN_ACCESS)
        token = bearer_token(request, max_token_bytes)
        if is_secret(token, metrics_expected):
            return dict(METRICS_ACCESS)
        if is_secret(token, expected):
            return dict(KEY_ACCESS)
        if verify_jwt is not None:
            return verify_jwt(token, admin_only)
        raise OAuthProblem(detail="Invalid authentication token")

    def with_jwt(request, required_scopes: frozenset[str]):
        if verify_jwt is None:
            return NO_VALUE
        return verify_jwt(bearer_token(request, max_token_bytes), required_scopes)

    class MnemoBearer(BearerSecurityHandler):
        def get_fn(self, security_scheme, required_scopes):
            if security_scheme.get(METRICS_SCHEME):
                return with_metrics_credential
            if security_scheme.get("bearerFormat") == "JWT":
                return partial(with_jwt, required_scopes=frozenset(required_scopes or ()))
            return with_security_key

    return MnemoBearer


def is_secret(token: str, expected: bytes | None) -> bool:
    """Whether ``token`` is the secret ``expected`` (never, when none is configured), compared
    in constant time. Starlette decodes headers as latin-1, so encoding the token that way gives
    back the bytes that were sent."""
    return expected is not None and hmac.compare_digest(token.encode("latin-1", "replace"), expected)


def bearer_token(request, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> str:
    return token_in(request.headers.get("Authorization"), max_bytes)


def token_in(authorization: str | None, max_bytes: int) -> str:
    """The token of an Authorization header's value ('Bearer <token>', the scheme in any case);
    OAuthProblem when there is none, or it is longer than ``max_bytes`` (Starlette decodes
    headers as latin-1: one character per byte)."""
    if not authorization:
        raise OAuthProblem(detail="Authorization header required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise OAuthProblem(detail="Authorization header must be 'Bearer <token>'")
    if len(token) > max_bytes:
        raise OAuthProblem(detail=f"The token is longer than {max_bytes} bytes")
    return token


class JwtVerifier:
    """Checks a bearer JWT and the scope an operation needs; the caller's token_info."""

    def __init__(self, config: JwtConfig):
        self.key = config.key
        self.algorithms = [config.algorithm]
        self.audience = config.audience
        self.options = {"require": ["exp"], "verify_aud": config.audience is not None}

    def __call__(self, token: str, required_scopes: frozenset[str]) -> dict:
        claims = self.claims(token)
        sub = claims.get("sub")
        if sub is not None and not is_user_id(sub):
            raise OAuthProblem(detail="The token's sub claim is not a usable user id")
        scopes = scope_list(claims.get("scopes"))
        if ADMIN_SCOPE not in scopes:
            missing = sorted(required_scopes - set(scopes))
            if missing:
                raise ForbiddenProblem(f"This token lacks the scope {', '.join(missing)}")
            if sub is None:
                raise ForbiddenProblem("The token names no user (sub claim)")
        return {"sub": sub, "scopes": tuple(scopes), "via": "jwt"}

    def claims(self, token: str) -> dict:
        try:
            return jwt.decode(token, self.key, algorithms=self.algorithms, audience=self.audience,
                              leeway=LEEWAY_S, options=self.options)
        except jwt.ExpiredSignatureError:
            raise OAuthProblem(detail="The token has expired") from None
        except jwt.ImmatureSignatureError:
            raise OAuthProblem(detail="The token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise OAuthProblem(detail="The token is not meant for this service (aud)") from None
        except jwt.MissingRequiredClaimError as error:
            raise OAuthProblem(detail=f"The token has no {error.claim} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise OAuthProblem(detail="Invalid authentication token") from None


def is_user_id(value) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= MAX_USER_ID
            and not CONTROL_CHARACTERS.search(value))


def scope_list(claim) -> list[str]:
    """The ``scopes`` claim as a list: a list of strings, or one space-separated string."""
    if isinstance(claim, str):
        return claim.split()
    if isinstance(claim, list):
        return [scope for scope in claim if isinstance(scope, str)]
    return []


class Callers:
    """Who sends a request, for the rate limit: ``admin`` for the security key's holder (and an
    administrator's JWT naming no user), ``metrics`` for the scraper, ``user:<sub>`` for a JWT's
    user, or None when the credential proves nothing (none, wrong, expired, too long, or no
    credential is configured at all), so that the caller is known by its address instead.

    The rules and credentials are the security handler's, so one caller is one caller however
    its header is written, and a token nobody signed cannot spend a user's allowance. Tokens
    already verified are remembered by a digest (never the token) until they expire, so each
    is verified here once rather than on every request.
    """

    def __init__(self, security_key: str | None, jwt_config: JwtConfig | None,
                 metrics_token: str | None, max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
                 remembered: int = 10_000):
        self.expected = security_key.encode() if security_key is not None else None
        self.metrics_expected = metrics_token.encode() if metrics_token is not None else None
        self.verify = JwtVerifier(jwt_config) if jwt_config is not None else None
        self.max_token_bytes = max_token_bytes
        self.remembered = remembered
        # digest of a token -> (its caller, when to verify it again)
        self.verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def __call__(self, authorization: str | None) -> str | None:
        try:
            token = token_in(authorization, self.max_token_bytes)
        except OAuthProblem:
            return None
        if is_secret(token, self.expected):
            return "admin"
        if is_secret(token, self.metrics_expected):
            return "metrics"
        return self.jwt_holder(token) if self.verify is not None else None

    def jwt_holder(self, token: str) -> str | None:
        digest = hashlib.blake2b(token.encode("latin-1", "replace"), digest_size=16).digest()
        known = self.verified.get(digest)
        if known is not None and known[1] > time.time():
            self.verified.move_to_end(digest)
            return known[0]
        try:
            claims = self.verify.claims(token)
        except OAuthProblem:
            return None
        sub = claims.get("sub")
        if is_user_id(sub):
            holder = "user:" + sub
        elif sub is None and ADMIN_SCOPE in scope_list(claims.get("scopes")):
            holder = "admin"
        else:
            return None
        self.verified[digest] = (holder, float(claims["exp"]) + LEEWAY_S)
        if len(self.verified) > self.remembered:
            self.verified.popitem(last=False)
        return holder
