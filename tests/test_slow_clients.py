"""Slow or silent clients cannot hold a connection open: a request head must arrive within
MNEMO_HEADER_TIMEOUT of the connection opening (or of the request's first byte, on a kept-alive
connection), and its body within MNEMO_BODY_TIMEOUT of the head; past either the server answers
408 in the contract's error shape and closes. An idle kept-alive connection is not a slow
request: it stays open for the keep-alive time."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import mnemo_command, server_env, start_server, stop_server
from .raw_http import Answer, connect, port_of, read_answer, send_quietly

TIMEOUT_S = 1
# Long enough for the timeout and a slow machine's scheduling, short enough to keep the suite quick.
DEADLINE_S = 6
TRICKLE_EVERY_S = 0.25

POST_HEAD = b"POST /memories HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
# What each client sends before it stalls.
STALLED = {
    "silent connection": b"",
    "request line cut short": b"GET /heal",
    "headers cut short": b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ",
    "body shorter than its Content-Length": POST_HEAD + b"Content-Length: 100\r\n\r\n{",
    "chunked body never finished": POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n",
}
GET = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(params=["1", "2"], ids=["1 worker", "2 workers"])
def port(request, tmp_path):
    env = server_env(MNEMO_DATABASE_URL=f"sqlite:///{tmp_path}/memories.db",
                     MNEMO_HEADER_TIMEOUT=str(TIMEOUT_S), MNEMO_BODY_TIMEOUT=str(TIMEOUT_S))
    process, base = start_server([*mnemo_command(), "serve", "--workers", request.param, "--port", "{port}"],
                                 env, cwd=tmp_path)
    yield port_of(base)
    stop_server(process)


def stalled(port: int, sent: bytes) -> Answer | None:
    with connect(port) as sock:
        send_quietly(sock, sent)
        return read_answer(sock, DEADLINE_S)


def trickled(port: int) -> Answer | None:
    """Headers one byte at a time, each well within the timeout, until the server answers."""
    started = time.monotonic()
    with connect(port) as sock:
        send_quietly(sock, b"GET /health HTTP/1.1\r\nHost: t\r\n")
        while time.monotonic() - started < DEADLINE_S:
            answer = read_answer(sock, TRICKLE_EVERY_S)
            if answer is not None:
                answer.seconds = time.monotonic() - started
                return answer
            if not send_quietly(sock, b"x"):
                return read_answer(sock, TRICKLE_EVERY_S)
    return None


def kept_alive(port: int) -> list[int]:
    """Two requests on one connection with an idle pause longer than the header timeout."""
    with connect(port) as sock:
        send_quietly(sock, GET)
        first = read_answer(sock, DEADLINE_S, then_closed=False)
        time.sleep(TIMEOUT_S * 2)
        send_quietly(sock, GET)
        second = read_answer(sock, DEADLINE_S, then_closed=False)
    return [answer.status if answer else None for answer in (first, second)]


def assert_timed_out(answer: Answer | None, case: str) -> None:
    assert answer is not None, f"{case}: no answer within {DEADLINE_S} s"
    assert answer.status == 408, (case, answer)
    body = answer.json()
    assert body.pop("request_id") == answer.headers["x-request-id"], case
    assert body["error_code"] == "REQUEST_TIMEOUT", (case, body)
    assert answer.closed, f"{case}: still open after the 408"
    assert answer.seconds < TIMEOUT_S + 2.5, (case, answer.seconds)


@pytest.mark.slow
def test_a_request_not_received_in_time_is_408_and_closed(port):
    with ThreadPoolExecutor(max_workers=len(STALLED) + 2) as pool:
        answers = {case: pool.submit(stalled, port, sent) for case, sent in STALLED.items()}
        answers["headers trickled a byte at a time"] = pool.submit(trickled, port)
        idle = pool.submit(kept_alive, port)
        for case, answer in answers.items():
            assert_timed_out(answer.result(), case)
        assert idle.result() == [200, 200]


def test_a_pipelined_request_waiting_behind_a_slow_answer_is_not_timed_out_meanwhile(tmp_path):
    # The second request's body cannot arrive while the server, answering the first, has
    # stopped reading: its clock starts once the first is answered. Before, its 408 went out
    # in place of the first request's answer, although the first had been stored.
    database = tmp_path / "memories.db"
    env = server_env(MNEMO_DATABASE_URL=f"sqlite:///{database}", MNEMO_BODY_TIMEOUT=str(TIMEOUT_S))
    process, base = start_server([*mnemo_command(), "serve", "--port", "{port}"], env, cwd=tmp_path)
    try:
        assert httpx.post(base + "/memories", json={"memory": "warm", "user_id": "u"}).status_code == 200
        # Another writer holds the database for longer than the body timeout: the first request
        # waits for it.
        holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(3 * TIMEOUT_S, lambda: holder.execute("COMMIT"))
        release.start()
        first, second = (b'{"memory":"%s","user_id":"u"}' % text for text in (b"first", b"second"))
        with connect(port_of(base)) as sock:
            send_quietly(sock, POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(first) + first
                         + POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(second) + second[:10])
            answer = read_answer(sock, DEADLINE_S, then_closed=False)
            assert answer is not None and answer.status == 200, answer
            assert b'"first"' in answer.body
            send_quietly(sock, second[10:])
            answer = read_answer(sock, DEADLINE_S, then_closed=False)
            assert answer is not None and answer.status == 200, answer
        release.join()
        holder.close()
        stored = httpx.get(base + "/memories", params={"user_id": "u"}).json()
        assert sorted(m["memory"] for m in stored["data"]) == ["first", "second", "warm"]
    finally:
        stop_server(process)
