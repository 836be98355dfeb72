"""HTTP/1.1 over a bare socket, for tests of what the server does with requests no HTTP client
library would send: cut short, trickled, oversized or malformed. Only 127.0.0.1; every read has a
deadline."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import orjson


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    # Whether the server closed the connection after the answer.
    closed: bool = False
    seconds: float = 0.0

    def json(self) -> dict:
        return orjson.loads(self.body)


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send ``data``; False when the server has already closed or reset the connection."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def read_answer(sock: socket.socket, deadline_s: float = 5.0, then_closed: bool = True) -> Answer | None:
    """The next answer on ``sock`` (None if the connection closed, or nothing came, before
    ``deadline_s``); with ``then_closed``, also whether the server closed it within
    ``deadline_s`` more."""
    started = time.monotonic()
    deadline = started + deadline_s
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        body += chunk
    answer = Answer(status, headers, body[:length], seconds=time.monotonic() - started)
    if then_closed:
        answer.closed = _recv(sock, time.monotonic() + deadline_s) == b""
    return answer


def _recv(sock: socket.socket, deadline: float) -> bytes | None:
    """Up to 64 KiB; b"" once the server closed; None when the deadline passed first."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""
