"""Liveness of the service, and readiness: whether its databases answer."""

from mnemo import extensions
from mnemo.api_errors import Unavailable
from mnemo.errors import RETRY_AFTER_S


def health():
    return {"status": "ok"}, 200


def ready():
    databases = extensions.catalog().readiness()
    body = {"databases": {db_id: "ok" if up else "unavailable" for db_id, up in databases.items()}}
    if all(databases.values()):
        return {"status": "ok", **body}, 200
    down = ", ".join(sorted(db_id for db_id, up in databases.items() if not up))
    raise Unavailable(f"Unavailable: database {down}", headers={"Retry-After": str(RETRY_AFTER_S)},
                      extra={"status": "unavailable", **body})
