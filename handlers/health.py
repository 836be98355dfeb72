"""Liveness of the service, and readiness: whether its databases answer."""

from flask import current_app

from mnemo.errors import RETRY_AFTER_S

from ._shared import CATALOG, error


def health():
    return {"status": "ok"}, 200


def ready():
    databases = current_app.extensions[CATALOG].readiness()
    body = {"databases": {db_id: "ok" if up else "unavailable" for db_id, up in databases.items()}}
    if all(databases.values()):
        return {"status": "ok", **body}, 200
    down = ", ".join(sorted(db_id for db_id, up in databases.items() if not up))
    problem, _ = error(503, f"Unavailable: database {down}", "DATABASE_UNAVAILABLE")
    return {"status": "unavailable", **problem, **body}, 503, {"Retry-After": str(RETRY_AFTER_S)}
