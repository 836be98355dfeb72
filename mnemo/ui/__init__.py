"""The memory browser at ``/ui``: this folder's static files, served with the page's security headers.

The page is plain ES modules that call the JSON API with the caller's own token, so it can do
nothing the API would refuse. It is not an API operation, so it is served here, beside the
contract, rather than through it.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..edge import send_error

PREFIX = "/ui"
TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
         ".css": b"text/css; charset=utf-8"}
# No inline script or style anywhere, no framing, no form posting elsewhere, and the page
# reaches nothing but its own origin (the API it is served with).
SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Revalidated on every load (cheaply, by ETag), so an upgraded Mnemo's page is used at once.
    (b"cache-control", b"no-cache"),
)


def page_files() -> dict[str, tuple[bytes, bytes, bytes]]:
    """Each file of the page by name: (content, content type, ETag)."""
    files = {}
    for entry in resources.files(__package__).iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if entry.is_file() and suffix in TYPES:
            content = entry.read_bytes()
            etag = f'"{hashlib.sha256(content).hexdigest()[:32]}"'.encode()
            files[entry.name] = (content, TYPES[suffix], etag)
    return files


class UiPage:
    """ASGI middleware answering ``/ui`` and ``/ui/<file>``; anything else passes on."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.files = page_files()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        if path == PREFIX:
            # Relative, so the page's own relative links also work behind a proxy's path prefix.
            await self.answer(send, 308, [(b"location", b"ui/")])
            return
        found = self.files.get(path[len(PREFIX) + 1:] or "index.html")
        if found is None:
            await send_error(scope, send, 404, "No such page", headers=SECURITY_HEADERS)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(scope, send, 405, "Method not allowed",
                             headers=(*SECURITY_HEADERS, (b"allow", b"GET, HEAD")))
            return
        content, content_type, etag = found
        headers = [(b"content-type", content_type), (b"etag", etag)]
        if Headers(scope=scope).get("if-none-match") == etag.decode():
            await self.answer(send, 304, headers)
            return
        await self.answer(send, 200, [*headers, (b"content-length", str(len(content)).encode())],
                          b"" if scope["method"] == "HEAD" else content)

    @staticmethod
    async def answer(send: Send, status: int, headers: list, body: bytes = b"") -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})
