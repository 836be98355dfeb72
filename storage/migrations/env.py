"""Alembic's environment: runs the migrations of one memory table family.

Mnemo (``storage/migration.py``) calls Alembic with an open connection, inside a transaction
it owns, and the family's name in ``Config.attributes``; each family keeps its own version
table, ``<family>_alembic_version``. A developer writing a new revision runs Alembic's own
command from the repository root, naming a scratch database and a family with ``-x``::

    alembic -x url=sqlite:///scratch.db -x table=mnemo_memories upgrade head
    alembic -x url=sqlite:///scratch.db -x table=mnemo_memories revision --autogenerate -m "..."
"""

from __future__ import annotations

from alembic import context

from storage import migration
from storage.database import create_engine

config = context.config
arguments = context.get_x_argument(as_dictionary=True)
table = config.attributes.setdefault("table", arguments.get("table", migration.DEFAULT_TABLE))


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=migration.family_metadata(table),
        version_table=migration.version_table(table),
        # SQLite alters most things by copying the table; batch mode does that for us.
        render_as_batch=True,
        **migration.comparison_filters(table),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Mnemo's migrations run against a database, not as SQL scripts (--sql)")
if "connection" in config.attributes:
    run(config.attributes["connection"])
else:
    if "url" not in arguments:
        raise SystemExit("name a database: alembic -x url=sqlite:///scratch.db -x table=NAME ...")
    engine = create_engine(arguments["url"])
    try:
        with migration.locked(engine) as connection:
            run(connection)
    finally:
        engine.dispose()
