"""Flask behind Connexion's ASGI middleware, with one thread hop each way per request.

Why this module exists: Connexion's FlaskApp runs Flask through a2wsgi, which carries each
message between the event loop and the handler thread on its own: the request body as Flask
reads it, then the answer's start, each of its chunks and its end, each one a hand-over to
the other thread and a wait for it. Under load every hand-over is a wake-up of a sleeping
thread. Mnemo's requests and answers are small and bounded (``edge.LimitBodySize`` refuses a
large body before it gets here; every answer is one JSON document or the metrics text), so
the body is read before the hop and the answer gathered in the thread: one hop there, one
back (what it saves: docs/PERFORMANCE.md).

What it changes, and nothing else: the adapter between the ASGI stack and Flask's WSGI app.
Handlers still run on a pool of threads, never on the event loop, so a slow database call
holds one thread, not the process. Written for Connexion 3.3 with a2wsgi 1.10; delete it when
Connexion's FlaskApp hands requests over whole, or Mnemo leaves Flask. If Connexion's FlaskApp
no longer has the shape this relies on, ``install`` leaves it alone and says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor

import connexion
from a2wsgi.wsgi import WSGIMiddleware, build_environ
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class BufferedWSGI:
    """An ASGI app that runs a WSGI app on a thread pool, the request body read whole before
    the hand-over and the answer gathered whole in the thread."""

    def __init__(self, app: WSGIApp, executor: Executor):
        # ``app`` by this name: Connexion's add_wsgi_middleware wraps it in place.
        self.app = app
        self.executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # Connexion's lifespan middleware answers lifespan events before they get here,
            # and the API has no WebSocket routes.
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        environ = build_environ(scope, io.BytesIO(b"".join(chunks)))  # type: ignore[arg-type]
        # The handler sees the request's context variables (Connexion's current operation and
        # request), as it would have on a2wsgi's threads.
        run = functools.partial(contextvars.copy_context().run, self._respond, environ)
        status, headers, body = await asyncio.get_running_loop().run_in_executor(self.executor, run)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _respond(self, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run the WSGI app on this thread: its status, headers and whole body."""
        started: list = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            # Nothing has been sent yet, so a later call (an error page, with exc_info) simply
            # replaces the answer, as PEP 3333 allows before the headers go out.
            started[:] = [status, headers]
            return written.append

        answer = self.app(environ, start_response)
        try:
            written.extend(answer)
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        status, headers = started
        return (int(status.split(" ", 1)[0]),
                [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
                b"".join(written))


def problem(app: connexion.FlaskApp) -> str | None:
    """What of Connexion's FlaskApp this module relies on ``app`` no longer has; None while it
    has it all."""
    inner = getattr(app, "_middleware_app", None)
    adapter = getattr(inner, "asgi_app", None)
    if isinstance(adapter, BufferedWSGI):
        return None
    if not isinstance(adapter, WSGIMiddleware) or getattr(inner, "app", None) is None:
        return "Connexion's FlaskApp no longer runs Flask through a2wsgi at _middleware_app.asgi_app"
    return None


def install(app: connexion.FlaskApp, executor: Executor) -> None:
    """Put BufferedWSGI, running handlers on ``executor``'s threads, in place of a2wsgi between
    ``app``'s middleware and its Flask app."""
    inner = getattr(app, "_middleware_app", None)
    if isinstance(getattr(inner, "asgi_app", None), BufferedWSGI):
        return
    trouble = problem(app)
    if trouble:
        log.warning("workaround bridge not installed, Flask is left behind a2wsgi: %s", trouble)
        return
    inner.asgi_app = BufferedWSGI(inner.asgi_app.app, executor)
