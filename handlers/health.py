"""Liveness of the service, and readiness: whether its databases answer, and how many memories
wait for an embedding in each."""

from mnemo import extensions
from mnemo.api_errors import Unavailable
from mnemo.errors import RETRY_AFTER_S
from storage import DatabaseUnavailable


def health():
    return {"status": "ok"}, 200


def ready():
    catalog = extensions.catalog()
    databases = catalog.readiness()
    backlog = {}
    for db_id in [db_id for db_id, up in databases.items() if up]:
        try:
            backlog[db_id] = catalog.embedding_backlog(db_id)
        except DatabaseUnavailable:  # it went down since it answered
            databases[db_id] = False
    body = {"databases": {db_id: "ok" if up else "unavailable" for db_id, up in databases.items()},
            "embedding_backlog": backlog}
    if all(databases.values()):
        return {"status": "ok", **body}, 200
    down = ", ".join(sorted(db_id for db_id, up in databases.items() if not up))
    raise Unavailable(f"Unavailable: database {down}", headers={"Retry-After": str(RETRY_AFTER_S)},
                      extra={"status": "unavailable", **body})
