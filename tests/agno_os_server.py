"""Serve Agno AgentOS's memory API over SQLite, for the side-by-side difference tests.

usage: python agno_os_server.py PORT DB_ID=SQLITE_FILE [DB_ID=SQLITE_FILE ...]

With one database this is a real AgentOS (its middleware and error handlers included); with
several, Agno's memory router over all of them, which is how AgentOS routes db_id. With
JWT_VERIFICATION_KEY in the environment, the AgentOS checks JWTs and their scopes, with per-user
isolation on.
"""

import os
import sys

import uvicorn
from agno.db.sqlite import SqliteDb


def main() -> None:
    port = int(sys.argv[1])
    databases = [SqliteDb(db_file=path, id=db_id)
                 for db_id, path in (spec.split("=", 1) for spec in sys.argv[2:])]
    if len(databases) == 1:
        from agno.os import AgentOS

        if os.environ.get("JWT_VERIFICATION_KEY"):
            app = AgentOS(db=databases[0], telemetry=False, authorization=True, user_isolation=True).get_app()
        else:
            app = AgentOS(db=databases[0], telemetry=False).get_app()
    else:
        from agno.os.routers.memory.memory import get_memory_router
        from fastapi import FastAPI

        app = FastAPI()
        app.include_router(get_memory_router(dbs={db.id: [db] for db in databases}))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
