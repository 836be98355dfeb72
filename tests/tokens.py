"""Keys and JWTs for the tests: generated here with cryptography, never read from anywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import cache

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

READ, WRITE, DELETE, ADMIN = "memories:read", "memories:write", "memories:delete", "agent_os:admin"
ALL_USER_SCOPES = [READ, WRITE, DELETE]
HS_SECRET = "an HMAC secret that is long enough for HS256!"


class KeyPair:
    def __init__(self, private_key):
        self.private_key = private_key
        self.public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.private_pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()


@cache
def rsa_keys(name: str = "issuer") -> KeyPair:
    """An RSA key pair per name: 'issuer' is the one servers trust, any other is a stranger."""
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@cache
def ec_keys(name: str = "issuer") -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP256R1()))


def claims(sub: str | None = "alice", scopes=None, lifetime_s: int = 300, **extra) -> dict:
    now = int(time.time())
    payload = {"iat": now, "exp": now + lifetime_s}
    if sub is not None:
        payload["sub"] = sub
    if scopes is not None:
        payload["scopes"] = list(scopes) if not isinstance(scopes, str) else scopes
    payload.update(extra)
    return {k: v for k, v in payload.items() if v is not None}


def rs256(sub: str | None = "alice", scopes=ALL_USER_SCOPES, keys: KeyPair | None = None, **extra) -> str:
    """A token signed the way the test servers trust (RS256 with the issuer's key)."""
    return jwt.encode(claims(sub, scopes, **extra), (keys or rsa_keys()).private_pem, algorithm="RS256")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict, payload: dict, secret: bytes | None) -> str:
    """A token built by hand, as an attacker would: HMAC-SHA256 over it with ``secret``, or no
    signature at all when ``secret`` is None."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"
