"""What an OpenAI-compatible server said when it refused: for optimize-memories' model and the
embeddings provider alike."""

from __future__ import annotations

import httpx

# How much of the server's own error message is passed on (to the log, or to the client).
MAX_UPSTREAM_MESSAGE = 300


def upstream_message(response: httpx.Response) -> str:
    """The server's own error message (OpenAI's ``{"error": {"message"}}``) as ``": message"``,
    on one line and cut short; empty if it gave none."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, LookupError, TypeError):
        return ""
    if not isinstance(message, str) or not message.strip():
        return ""
    return ": " + " ".join(message.split())[:MAX_UPSTREAM_MESSAGE]
