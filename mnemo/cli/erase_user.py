"""mnemo erase-user: everything stored about one user, erased from the command line."""

from __future__ import annotations

import click

from storage import CatalogError

from .common import (
    WrongInput,
    chosen_database,
    config_option,
    database_trouble,
    db_id_option,
    load_settings,
    open_catalog,
    reason,
    table_option,
)


@click.command("erase-user", short_help="Erase everything stored about one user.")
@click.argument("user_id", metavar="USER_ID")
@config_option
@db_id_option
@table_option
def erase_user(user_id: str, config: str | None, db_id: str | None, table: str | None) -> None:
    r"""Erase one user's memories with their topics, history and statistics from one memory
    table, as DELETE /users/{user_id}/memories does, for any USER_ID that is stored: also one
    the API no longer accepts, such as an id ending in a newline that was stored before the API
    refused them. Prints {"deleted": N}. Settings as for serve.

    USER_ID is the user id exactly as stored; in bash, $'...' writes control characters:
    $'nl-user\n'.
    """
    settings = load_settings(config)
    chosen = chosen_database(settings, db_id)
    catalog = open_catalog(settings)
    with database_trouble(catalog, lambda error: f"cannot use the database: {reason(error)}"):
        try:
            repository = catalog.repository(chosen, table)
            catalog.databases[chosen].prepare()
            deleted = repository.erase_user(user_id)
        except CatalogError as error:
            raise WrongInput(str(error)) from None
    click.echo(f'{{"deleted": {deleted}}}')
