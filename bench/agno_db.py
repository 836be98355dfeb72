"""Agno's own database class for a benchmark database URL (runs in Agno's virtualenv)."""


def agno_database(url: str):
    if url.startswith("sqlite:///"):
        from agno.db.sqlite import SqliteDb

        return SqliteDb(db_file=url.removeprefix("sqlite:///"), id="bench")
    from agno.db.postgres import PostgresDb

    return PostgresDb(db_url=url, id="bench")
