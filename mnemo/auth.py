"""Who may call the API: the security key, checked where the document says it is required.

The document declares HTTP bearer security on every memory operation; Connexion enforces it
and calls the handler built here. With a security key configured, the bearer token must be
that key (compared in constant time). With none, the API is open and the server says so.
"""

from __future__ import annotations

import hmac
import logging

from connexion.exceptions import OAuthProblem
from connexion.security import BearerSecurityHandler

log = logging.getLogger("mnemo")

OPEN_ACCESS = {"sub": None, "scopes": ["agent_os:admin"], "via": "open"}
KEY_ACCESS = {"sub": None, "scopes": ["agent_os:admin"], "via": "security_key"}


def bearer_security(security_key: str | None) -> type[BearerSecurityHandler]:
    """A Connexion security handler for the document's HTTP bearer scheme."""
    if security_key is None:
        log.warning(
            "No security key is set (MNEMO_SECURITY_KEY or OS_SECURITY_KEY): the memory API "
            "is open to anyone who can reach this server."
        )
    expected = security_key.encode() if security_key is not None else None

    class SecurityKeyBearer(BearerSecurityHandler):
        def get_fn(self, security_scheme, required_scopes):
            return self._verify

        def _verify(self, request):
            if expected is None:
                return OPEN_ACCESS
            authorization = request.headers.get("Authorization")
            if not authorization:
                raise OAuthProblem(detail="Authorization header required")
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise OAuthProblem(detail="Authorization header must be 'Bearer <token>'")
            # Starlette decodes headers as latin-1, so this gives back the bytes that were sent.
            presented = token.strip().encode("latin-1", "replace")
            if not hmac.compare_digest(presented, expected):
                raise OAuthProblem(detail="Invalid authentication token")
            return KEY_ACCESS

    return SecurityKeyBearer
