"""Who calls a tool, and whether that caller may use it: the REST API's credentials and rules.

An MCP client sends its credential once per HTTP request, as the REST API expects it
(``Authorization: Bearer <security key or JWT>``); it is checked by mnemo.auth's own pieces,
so a token admits the same caller over both. A tool needs the scopes its operation's security
names in openapi.yaml, which a user's JWT must carry (an administrator needs none).
"""

from __future__ import annotations

from connexion.exceptions import OAuthProblem

from ..auth import KEY_ACCESS, OPEN_ACCESS, JwtVerifier, is_admin, is_secret, token_in
from ..config import Settings

# Whoever can start `mnemo mcp` on this machine can read its database directly: over standard
# input and output, the caller is the local administrator.
LOCAL_ADMINISTRATOR = {**KEY_ACCESS, "via": "stdio"}


class Credentials:
    """The caller an ``Authorization`` header proves, by the server's configured credentials."""

    def __init__(self, settings: Settings):
        self.expected = settings.security_key.encode() if settings.security_key is not None else None
        self.verify = JwtVerifier(settings.jwt) if settings.jwt is not None else None
        self.max_token_bytes = settings.max_token_bytes

    def caller(self, authorization: str | None) -> dict:
        """The caller as ``token_info``; OAuthProblem (401) or ForbiddenProblem (403) as the
        REST API would answer."""
        if self.expected is None and self.verify is None:
            return dict(OPEN_ACCESS)
        token = token_in(authorization, self.max_token_bytes)
        if is_secret(token, self.expected):
            return dict(KEY_ACCESS)
        if self.verify is None:
            raise OAuthProblem(detail="Invalid authentication token")
        # No scope yet: each tool asks for its own when it is called.
        return self.verify(token, frozenset())


def missing_scope(caller: dict, scopes: frozenset[str]) -> str | None:
    """Why ``caller`` may not use an operation that needs ``scopes``, in the REST API's words;
    None if it may."""
    if is_admin(caller):
        return None
    missing = sorted(scopes - set(caller["scopes"]))
    return f"This token lacks the scope {', '.join(missing)}" if missing else None
