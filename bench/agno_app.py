"""Agno AgentOS over the benchmark's database, for gunicorn (runs in Agno's own virtualenv).

The database comes from BENCH_AGNO_DB: ``sqlite:///PATH`` for Agno's SqliteDb, anything else
is a PostgreSQL URL for its PostgresDb. Nothing but the memory API is configured, as an Agno
app that only serves memories would be.
"""

import os

from agno.os import AgentOS
from agno_db import agno_database

app = AgentOS(db=agno_database(os.environ["BENCH_AGNO_DB"]), telemetry=False).get_app()
