"""Flask runs behind Connexion's middleware with one thread hop each way (mnemo/bridge.py):
handlers run off the event loop, see the whole request and give their whole answer."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import connexion
import pytest

from mnemo.workarounds import bridge

THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="handler")


def call(app, body_chunks=(b"",), method="POST", disconnect_after=None):
    """Drive an ASGI app with one request; the messages it sent back."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": "/echo", "raw_path": b"/echo", "query_string": b"a=1",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"test"), (b"x-thing", b"yes")]}
    incoming = [{"type": "http.request", "body": chunk, "more_body": i < len(body_chunks) - 1}
                for i, chunk in enumerate(body_chunks)]
    if disconnect_after is not None:
        incoming = incoming[:disconnect_after] + [{"type": "http.disconnect"}]
    sent = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("Content-Type", "text/plain"),
                                   ("X-Thread", threading.current_thread().name)])
    return [b"got:", body, b":", environ["QUERY_STRING"].encode(), b":", environ["HTTP_X_THING"].encode()]


def test_the_handler_reads_the_whole_body_sent_in_chunks_and_its_answer_arrives_whole():
    sent = call(bridge.BufferedWSGI(echo, THREADS), body_chunks=(b"ab", b"cd", b"ef"))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 201
    assert (b"content-type", b"text/plain") in sent[0]["headers"]
    assert sent[1] == {"type": "http.response.body", "body": b"got:abcdef:a=1:yes"}
    assert len(sent) == 2


def test_handlers_run_on_the_handler_threads_not_on_the_event_loop():
    sent = call(bridge.BufferedWSGI(echo, THREADS))
    thread = dict(sent[0]["headers"])[b"x-thread"]
    assert thread.startswith(b"handler") and thread != threading.main_thread().name.encode()


def test_a_client_gone_before_its_body_ends_runs_no_handler():
    ran = []

    def app(environ, start_response):
        ran.append(environ)
        start_response("200 OK", [])
        return [b""]

    assert call(bridge.BufferedWSGI(app, THREADS), body_chunks=(b"a", b"b"), disconnect_after=1) == []
    assert ran == []


def test_an_error_page_started_after_the_first_start_replaces_it_and_the_answer_is_closed():
    closed = []

    class Answer(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        start_response("500 Internal Server Error", [("X-Second", "1")], exc_info=(None, None, None))
        return Answer([b"oops"])

    sent = call(bridge.BufferedWSGI(app, THREADS))
    assert sent[0]["status"] == 500 and sent[0]["headers"] == [(b"x-second", b"1")]
    assert sent[1]["body"] == b"oops" and closed == [True]


def test_an_exception_in_the_handler_reaches_the_middleware_around_it():
    # Connexion's exception middleware turns it into the error answer; it must get the very
    # exception the handler raised.
    class Boom(Exception):
        pass

    def app(environ, start_response):
        raise Boom("no")

    with pytest.raises(Boom):
        call(bridge.BufferedWSGI(app, THREADS))


def test_the_app_serves_flask_through_the_bridge(app, client):
    assert isinstance(app._middleware_app.asgi_app, bridge.BufferedWSGI)
    assert client.get("/health").status_code == 200


def test_install_leaves_an_unexpected_connexion_alone(caplog):
    app = connexion.FlaskApp(__name__)
    app._middleware_app.asgi_app = odd = object()
    bridge.install(app, THREADS)
    assert app._middleware_app.asgi_app is odd
    assert "left behind a2wsgi" in caplog.text
