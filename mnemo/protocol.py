"""The HTTP server's side of a connection: how large a request's head may be, how long a client
may take to send it and its body, and what the server answers on its own, before the app sees a
request (the contract's JSON error, never uvicorn's plain text).

uvicorn's httptools protocol, which ``mnemo serve`` runs with one worker or several, would buffer
a head of any size and wait for a request, or the rest of one, as long as the client likes. This
subclass of it:

* counts a head's bytes as they arrive and answers 431 once they pass ``MNEMO_MAX_HEADER_BYTES``
  (414 when the URL alone does), so a connection never holds more than the limit and one read;
* answers 408 when a head has not arrived within ``MNEMO_HEADER_TIMEOUT`` of the connection
  opening (on a kept-alive connection, of the request's first byte), or a body within
  ``MNEMO_BODY_TIMEOUT`` of its head. An idle kept-alive connection is not a request: the
  keep-alive time closes it, silently, as before;
* answers 400 for what the parser refuses (an unknown method, a bad Content-Length, a malformed
  header or a path that is not ASCII);
* leaves a WebSocket upgrade request to the app, as plain HTTP (uvicorn's WebSocket protocol,
  turned off, answered the handshake itself, in plain text).

Each answer carries a request id (the client's ``X-Request-ID`` when it sent a sane one), closes
the connection and is logged as a warning under that id. A request the app never saw is counted
in the metrics as an unrouted one; one whose body timed out was seen, and is counted and
access-logged by the app as it ended there (the client having, to the app, gone away).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from . import metrics
from .config import ServerLimits, server_limits
from .edge import REQUEST_ID_HEADER_BYTES, SANE_REQUEST_ID
from .errors import error_body

log = logging.getLogger("mnemo")

# Where a connection stands in its current request.
HEAD, BODY, IDLE = "head", "body", "idle"
# What a request line and the blank line after the headers add to the head, and each header
# line to its name and value ("GET ", " HTTP/1.1\r\n"; ": ", "\r\n").
REQUEST_LINE_BYTES = 16
HEADER_LINE_BYTES = 4


class Refusal(Exception):
    """Raised in a parser callback to refuse the request: the parser stops there."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@functools.cache
def configured_limits() -> ServerLimits:
    """The limits in this process's environment, read once (``mnemo serve`` has checked them)."""
    return server_limits()


class MnemoHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = configured_limits()
        # A new connection is waiting for a head.
        self.reading = HEAD
        self.head_bytes = 0
        self.requests_read = 0
        self.started = time.monotonic()
        self.timer = None
        self.timed: tuple[str, int] | None = None
        # A refusal that waits for the answer to an earlier request on the connection.
        self.deferred: tuple[int, str, str | None] | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.watch()

    def connection_lost(self, exc) -> None:
        self.unwatch()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.reading != BODY:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self.reading == HEAD and self.head_bytes > self.limits.max_header_bytes:
                raise Refusal(431, self.head_too_large())
        except httptools.HttpParserUpgrade:
            # Mnemo serves no WebSocket (ws="none"): the app answers the request as plain HTTP,
            # and the connection, whose parser stops at an upgrade, is closed after that answer.
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except Refusal as refusal:
            self.refuse(refusal.status, refusal.detail)
            return
        except httptools.HttpParserError as error:
            # A Refusal raised in a callback comes back as the context of the parser's error.
            refusal = error.__context__
            if isinstance(refusal, Refusal):
                self.refuse(refusal.status, refusal.detail)
            else:
                self.refuse(400, "The request is not valid HTTP/1.1", reason=str(error))
            return
        self.watch()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading = HEAD
        self.started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_header_bytes:
            raise Refusal(414, f"The URL is longer than {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        # A head that came in one read was never counted while incomplete.
        size = REQUEST_LINE_BYTES + len(self.url) + sum(
            len(name) + len(value) + HEADER_LINE_BYTES for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            raise Refusal(431, self.head_too_large())
        self.reading = BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading = IDLE
        self.head_bytes = 0
        self.requests_read += 1

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.deferred is not None:
            if self.earlier_answer_pending():
                self.flow.pause_reading()
            else:
                status, detail, reason = self.deferred
                self.deferred = None
                self.refuse(status, detail, reason)
            return
        # A request that waited behind this answer is only now being read or run: its clock
        # starts now.
        self.watch()

    def earlier_answer_pending(self) -> bool:
        """Whether an earlier request on this connection is still being answered (pipelined
        requests are answered in order): while one is, nothing may be written, and the request
        behind it cannot be blamed for waiting."""
        if self.reading == BODY:
            return bool(self.pipeline)  # this request is queued behind a running one
        return self.cycle is not None and not self.cycle.response_complete

    # Time limits

    def watch(self) -> None:
        """Keep one timer on the connection: on the head or the body being received, none while
        it is idle or the app is answering."""
        if self.flow.read_paused or self.earlier_answer_pending():
            # The server is not reading, or has not begun on this request: not the client's time.
            self.unwatch()
            self.timed = None
            return
        watched = (self.reading, self.requests_read)
        if watched == self.timed:
            return
        self.unwatch()
        self.timed = watched
        if self.reading == HEAD:
            self.timer = self.loop.call_later(self.limits.header_timeout_s, self.time_out,
                                              f"The request's head did not arrive within "
                                              f"{self.limits.header_timeout_s:g} s")
        elif self.reading == BODY:
            self.timer = self.loop.call_later(self.limits.body_timeout_s, self.time_out,
                                              f"The request's body did not arrive within "
                                              f"{self.limits.body_timeout_s:g} s")

    def unwatch(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def time_out(self, detail: str) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        if self.reading == BODY and self.cycle is not None and self.cycle.response_started:
            # The app has begun its own answer (or sent it, without reading the body).
            self.transport.close()
            return
        self.refuse(408, detail)

    # Answers

    def refuse(self, status: int, detail: str, reason: str | None = None) -> None:
        """Answer ``status`` with the contract's error body, and close the connection; after
        the answer to an earlier request, if one is still being given."""
        if self.earlier_answer_pending():
            self.deferred = self.deferred or (status, detail, reason)
            self.flow.pause_reading()
            self.unwatch()
            return
        in_app = self.cycle is not None and not self.cycle.response_complete
        if in_app:
            # The app is waiting for the body: it sees the client leave and sends nothing more.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        request_id = self.request_id()
        body = orjson.dumps(error_body(status, detail, request_id=request_id))
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                 b"\r\n", REQUEST_ID_HEADER_BYTES, b": ", request_id.encode(),
                 b"\r\nconnection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown client"
        log.warning("request %s: %d from the HTTP server to %s: %s", request_id, status, client,
                    reason or detail, extra={"fields": {"request_id": request_id}})
        if not in_app:
            # A request the app saw is counted (and access-logged) by the app.
            metrics.observe(None, status, time.monotonic() - self.started)

    def request_id(self) -> str:
        for name, value in self.headers or ():
            if name == REQUEST_ID_HEADER_BYTES:
                given = value.decode("latin-1")
                if SANE_REQUEST_ID.fullmatch(given):
                    return given
        return uuid.uuid4().hex

    def head_too_large(self) -> str:
        return (f"The request's head (request line and headers) is larger than "
                f"{self.limits.max_header_bytes} bytes")
