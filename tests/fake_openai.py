"""A fake OpenAI-compatible server on loopback: chat completions for optimize-memories tests,
embeddings for the embedding providers'.

It records every request and answers as the test tells it: a summary or vectors, an HTTP error,
a body that is not what was asked for, or nothing for a while.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    content: str | None = "User likes tea and coffee."
    raw: bytes | None = None  # sent as is instead of a chat completion
    delay_s: float = 0.0


@dataclass
class EmbeddingReply:
    """How POST .../embeddings answers: fake_vector of each input, or as told otherwise."""

    status: int = 200
    raw: bytes | None = None  # sent as is instead of an embeddings list
    delay_s: float = 0.0
    dimension: int = 8
    extra_vectors: int = 0  # this many vectors more than inputs (fewer when negative)
    reverse: bool = False  # data listed last index first, as nothing promises it is not
    ragged: bool = False  # the last vector one number short


def fake_vector(text: str, dimension: int) -> list[float]:
    """A vector that depends only on the text, not of unit length."""
    digest = hashlib.shake_256(text.encode()).digest(dimension)
    return [(byte - 127.5) / 32 for byte in digest]


def embeddings_body(inputs: list[str], reply: EmbeddingReply) -> bytes:
    count = max(0, len(inputs) + reply.extra_vectors)
    texts = (inputs + [f"extra {n}" for n in range(count)])[:count]
    data = [{"object": "embedding", "index": index, "embedding": fake_vector(text, reply.dimension)}
            for index, text in enumerate(texts)]
    if reply.ragged and data:
        data[-1]["embedding"].pop()
    if reply.reverse:
        data.reverse()
    return json.dumps({"object": "list", "data": data, "model": "fake-embed",
                       "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()


@dataclass
class FakeOpenAI:
    reply: Reply = field(default_factory=Reply)
    embedding_reply: EmbeddingReply = field(default_factory=EmbeddingReply)
    requests: list[dict] = field(default_factory=list)
    base_url: str = ""

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": request})
                embeddings = self.path.endswith("/embeddings")
                reply = fake.embedding_reply if embeddings else fake.reply
                time.sleep(reply.delay_s)
                if reply.raw is not None:
                    body = reply.raw
                elif reply.status >= 400:
                    body = json.dumps({"error": {"message": "The model `nope` does not exist",
                                                 "type": "invalid_request_error"}}).encode()
                elif embeddings:
                    body = embeddings_body(request["input"], reply)
                else:
                    body = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": [
                        {"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply.content}}]}).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as a timeout test wants

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
