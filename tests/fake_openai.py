"""A fake OpenAI-compatible chat-completions server on loopback, for optimize-memories tests.

It records every request and answers as the test tells it: a summary, an HTTP error, a body
that is not a chat completion, or nothing for a while.
"""

from __future__ import annotations

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
class FakeOpenAI:
    reply: Reply = field(default_factory=Reply)
    requests: list[dict] = field(default_factory=list)
    base_url: str = ""

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                fake.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "json": json.loads(self.rfile.read(length))})
                reply = fake.reply
                time.sleep(reply.delay_s)
                if reply.raw is not None:
                    body = reply.raw
                elif reply.status >= 400:
                    body = json.dumps({"error": {"message": "The model `nope` does not exist",
                                                 "type": "invalid_request_error"}}).encode()
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
