"""Liveness of the service itself."""


def health():
    return {"status": "ok"}, 200
