"""mnemo export, import and import-agno: memories in and out of a memory table, with a progress
bar on a terminal and a summary at the end (docs/IMPORT_EXPORT.md)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

import click

from storage import CatalogError, MemoryRepository
from storage.agno_source import SourceUnavailable

from .. import transfer
from ..transfer import BadInput, Moved
from .common import (
    CommandFailed,
    WrongInput,
    chosen_database,
    config_option,
    database_trouble,
    db_id_option,
    load_settings,
    memories,
    open_catalog,
    reason,
    table_option,
)


class Tally:
    """What one command has moved so far: shown, on a terminal, as a progress bar on standard
    error (nothing when standard error is a file or a pipe), and summed up at the end."""

    def __init__(self, doing: str, done: str):
        self.doing = doing  # "importing", for the bar
        self.done = done  # "imported", for the summary
        self.moved = Moved()
        self.started = time.perf_counter()

    def follow(self, steps: Iterator[Moved], total_bytes: int | None = None) -> None:
        """Run the transfer ``steps`` to its end, counting what it moves."""
        bar = {"label": self.doing, "file": sys.stderr, "hidden": not sys.stderr.isatty(),
               "item_show_func": lambda _: memories(self.moved.memories)}
        if total_bytes:
            with click.progressbar(length=total_bytes, **bar) as progress:
                for moved in steps:
                    self.moved = moved
                    progress.update(moved.bytes_read - progress.pos)
        else:
            # How much there is to move is not known: the count alone, without a bar.
            with click.progressbar(steps, bar_template="%(label)s  %(info)s", show_eta=False,
                                   **bar) as progress:
                for moved in progress:
                    self.moved = moved

    def summary(self) -> str:
        seconds = time.perf_counter() - self.started
        count = self.moved.memories
        return f"{self.done} {memories(count)} in {seconds:.1f} s ({count / max(seconds, 1e-6):.0f}/s)"

    def so_far(self) -> str:
        count = self.moved.memories
        if not count:
            return ""
        return f"; {memories(count)} {'was' if count == 1 else 'were'} {self.done} before it stopped"


@contextlib.contextmanager
def memory_table(config: str | None, db_id: str | None, table: str | None,
                 tally: Tally) -> Iterator[MemoryRepository]:
    """The memory table the options choose, its database ready. Whatever stops the work on it
    ends the command with its exit code, saying how much ``tally`` counted before."""
    settings = load_settings(config)
    chosen = chosen_database(settings, db_id)
    catalog = open_catalog(settings)
    with database_trouble(catalog, lambda error: f"cannot use the database: {reason(error)}"
                                                  f"{tally.so_far()}"):
        try:
            repository = catalog.repository(chosen, table)
            # Only the database in use: another one being down is no reason to refuse.
            catalog.databases[chosen].prepare()
            yield repository
        except (CatalogError, BadInput) as error:
            raise WrongInput(str(error)) from None
        except SourceUnavailable as error:
            raise CommandFailed(f"{error}{tally.so_far()}") from None
        except BrokenPipeError:
            raise  # the reader went away: click ends the command with exit code 1, quietly
        except OSError as error:
            raise CommandFailed(f"{reason(error)}{tally.so_far()}") from None


def open_file(path: str, mode: str):
    """FILE, or standard input or output for -; a FILE that cannot be opened is wrong input."""
    try:
        return click.open_file(path, mode)
    except OSError as error:
        raise WrongInput(f"cannot open {error.filename}: {error.strerror}") from None


file_argument = click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))


@click.command(short_help="Write every memory of a table as JSON lines.")
@file_argument
@config_option
@db_id_option
@table_option
def export(file: str, config: str | None, db_id: str | None, table: str | None) -> None:
    """Write every memory of one memory table to FILE (- for standard output) as JSON lines,
    one memory per line, in memory_id order. Settings as for serve (MNEMO_DATABASE_URL or
    --config)."""
    tally = Tally("exporting", "exported")
    with memory_table(config, db_id, table, tally) as repository, open_file(file, "wb") as out:
        tally.follow(transfer.export_memories(repository, out))
    click.echo(tally.summary(), err=True)


@click.command("import", short_help="Add the memories of a JSON lines file to a table.")
@file_argument
@config_option
@db_id_option
@table_option
def import_(file: str, config: str | None, db_id: str | None, table: str | None) -> None:
    """Add the memories of FILE (- for standard input; JSON lines, as export writes them) to one
    memory table, keeping their ids and times; missing ids and times are generated.

    Each batch of lines is checked in full, then written in one transaction; a bad line stops
    the import with exit code 2, naming the line. Settings as for serve.
    """
    tally = Tally("importing", "imported")
    with memory_table(config, db_id, table, tally) as repository, open_file(file, "rb") as lines:
        size = None if file == "-" else os.fstat(lines.fileno()).st_size
        tally.follow(transfer.import_lines(repository, lines), size)
        repository.refresh_statistics()
    click.echo(tally.summary(), err=True)


@click.command("import-agno", short_help="Copy the memories of an Agno database into a table.")
@click.option("--from", "source", required=True, metavar="URL",
              help="SQLAlchemy URL of the Agno database, e.g. sqlite:///agno.db or "
              "postgresql+psycopg://ai:ai@localhost:5532/ai.")
@click.option("--table", default="agno_memories", show_default=True, metavar="NAME",
              help="Agno's memory table.")
@click.option("--schema", metavar="NAME",
              help="Schema of Agno's memory table (default: ai for PostgreSQL, none for SQLite).")
@click.option("--to-table", metavar="NAME",
              help="Mnemo memory table to fill (default: the database's first).")
@config_option
@db_id_option
def import_agno(source: str, table: str, schema: str | None, to_table: str | None, config: str | None,
                db_id: str | None) -> None:
    """Copy the memories of an Agno SqliteDb or PostgresDb database into one memory table,
    keeping ids, topics, owners and times. The Agno database is only read."""
    tally = Tally("importing", "imported")
    with memory_table(config, db_id, to_table, tally) as repository:
        tally.follow(transfer.import_agno(repository, source, table, schema))
        repository.refresh_statistics()
    click.echo(tally.summary(), err=True)
