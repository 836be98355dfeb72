"""mnemo migrate: every configured memory table family to the current schema revision."""

from __future__ import annotations

import click

from storage import FamilyState, Status
from storage.migration import BASELINE

from .common import CommandFailed, config_option, database_trouble, load_settings, open_catalog, reason


@click.command(short_help="Upgrade every configured memory table to the current schema revision.")
@config_option
@click.option("--check", is_flag=True,
              help="Change nothing: report where each family stands and exit 1 unless all are at "
              "head and whole.")
def migrate(config: str | None, check: bool) -> None:
    """Upgrade every configured memory table family of every configured database to the
    current schema revision (Alembic's head), creating families that do not exist yet,
    recording tables made before Mnemo versioned its schema, and putting back a PostgreSQL
    search trigger that a partial restore left out.

    Each family is upgraded in one transaction; several processes may run this at once.
    Settings as for serve.

    Exit codes: 0 every family is at head; 1 a database cannot be reached or a family cannot be
    upgraded (or, with --check, one is not at head or needs repair); 2 wrong usage or
    configuration.
    """
    catalog = open_catalog(load_settings(config))
    behind = 0
    database = None
    # Database by database, in configuration order; each family is its own transaction, so a
    # failure leaves the families already upgraded at head.
    with database_trouble(catalog, lambda error: f"cannot open database {database.db_id!r}: "
                                                  f"{reason(error)}"):
        for database in catalog.databases.values():
            if check:
                states = database.schema_states()
                behind += sum(state.status is not Status.CURRENT for state in states)
                for state in states:
                    click.echo(f"{database.db_id}/{state.table}: {state.describe()}")
                continue
            for before in database.prepare(migrate=True):
                click.echo(f"{database.db_id}/{before.table}: {upgraded(before)}")
            missing = database.search_by_meaning_missing()
            if missing:
                click.echo(f"{database.db_id}: search by meaning is unavailable: {missing}; "
                           "everything else works", err=True)
    if behind:
        families = "family" if behind == 1 else "families"
        raise CommandFailed(f"{behind} table {families} to upgrade or repair; run `mnemo migrate`")


def upgraded(before: FamilyState) -> str:
    """What preparing a family did, given the state it was in."""
    if before.status is Status.CURRENT:
        return f"already at revision {before.head} (head)"
    if before.status is Status.ABSENT:
        return f"created at revision {before.head}"
    if before.status is Status.UNSYNCED:
        return (f"at revision {before.head} (head); search trigger put back and search table "
                "brought up to date")
    if before.status is Status.UNVERSIONED:
        recorded = f"tables from before schema versioning recorded as revision {BASELINE}"
        return recorded + (" (head)" if before.head == BASELINE else f", upgraded to {before.head}")
    return f"upgraded from revision {before.revision} to {before.head}"
