"""mnemo reindex: embed every memory of the chosen memory tables with the configured model."""

from __future__ import annotations

import sys
import time

import click

from storage import Catalog, CatalogError, MemoryRepository

from ..embeddings import EmbeddingUnavailable
from .common import (
    CommandFailed,
    WrongInput,
    config_option,
    database_trouble,
    load_settings,
    memories,
    open_catalog,
    reason,
)


@click.command(short_help="Embed the memories of each table with the configured embedding model.")
@config_option
@click.option("--db-id", metavar="ID", help="Only this database (default: every configured one).")
@click.option("--table", metavar="NAME",
              help="Only this memory table (default: every table of each chosen database).")
def reindex(config: str | None, db_id: str | None, table: str | None) -> None:
    """Make search by meaning work with the configured embedding model (MNEMO_EMBEDDINGS and
    its settings, as for serve) on the chosen memory tables: a table whose embeddings are
    another model's has them dropped and its model recorded anew, and every memory without an
    embedding is embedded, batch by batch.

    Run it after changing the embedding model: until then a search by meaning on such a table
    answers 400 EMBEDDING_MODEL_CHANGED. Searches by meaning resume as soon as it starts, and
    find each memory once it is embedded. Stopped half way, it can be run again (a running
    server's embedding worker also carries on with what is left).

    Exit codes: 0 every chosen table is embedded; 1 a database or the embedding model cannot
    be reached, or a table needs `mnemo migrate`; 2 wrong usage or configuration (embeddings
    off, an unknown database or table).
    """
    settings = load_settings(config)
    embedder = settings.embedder
    if embedder is None:
        raise WrongInput("embeddings are off (MNEMO_EMBEDDINGS=none): there is nothing to reindex; "
                         "set MNEMO_EMBEDDINGS (and its settings) as the server has them")
    catalog = open_catalog(settings)
    current = "the database"
    with database_trouble(catalog, lambda error: f"cannot use {current}: {reason(error)}"):
        try:
            chosen = chosen_tables(catalog, db_id, table)
        except CatalogError as error:
            raise WrongInput(str(error)) from None
        prepared = set()
        for database_id, name, repository in chosen:
            current = f"database {database_id!r}"
            if database_id not in prepared:
                catalog.databases[database_id].prepare()
                prepared.add(database_id)
            try:
                reindex_table(f"{database_id}/{name}", repository)
            except EmbeddingUnavailable as error:
                raise CommandFailed(f"{database_id}/{name}: {error}; run `mnemo reindex` again once "
                                    "the embedding model answers") from None


def chosen_tables(catalog: Catalog, db_id: str | None,
                  table: str | None) -> list[tuple[str, str, MemoryRepository]]:
    """(db_id, table, repository) of every table the options choose, in configuration order;
    CatalogError for a database or table that is not configured."""
    if db_id is not None:
        catalog.repository(db_id, table)  # refuses an unknown database or table
        databases = [catalog.databases[db_id]]
    else:
        databases = [database for database in catalog.databases.values()
                     if table is None or table in database.repositories]
        if not databases:
            raise CatalogError(f"no configured database has a memory table {table!r}")
    return [(database.db_id, name, repository) for database in databases
            for name, repository in database.repositories.items() if table is None or name == table]


def reindex_table(label: str, repository: MemoryRepository) -> int:
    """Reindex one table, its count shown on a terminal as it goes; how many were embedded."""
    embedder = repository.vectors.embedder
    started = time.perf_counter()
    dimension = embedder.dimension
    if dimension is None:
        # A remote model says how long its vectors are only in an answer.
        embedder.embed(["dimension"])
        dimension = embedder.dimension
    embedded = 0
    shown = {"label": f"reindexing {label}", "file": sys.stderr, "hidden": not sys.stderr.isatty(),
             "bar_template": "%(label)s  %(info)s", "show_eta": False, "show_percent": False,
             "show_pos": False, "item_show_func": lambda _: memories(embedded)}
    # How many need embedding is known only once reindex has queued them: the count alone.
    with click.progressbar(length=1, **shown) as bar:
        def progress(count: int) -> None:
            nonlocal embedded
            embedded += count
            bar.render_progress()

        repository.reindex(dimension, progress)
    seconds = time.perf_counter() - started
    click.echo(f"{label}: {memories(embedded)} embedded with {embedder.model} ({dimension} dimensions) "
               f"in {seconds:.1f} s")
    return embedded
