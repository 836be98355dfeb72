"""mnemo mcp: the memory tools over standard input and output, for a local assistant."""

from __future__ import annotations

import anyio
import click

from ..contract import Contract, ContractError
from .common import (
    WrongInput,
    config_option,
    configure_logging,
    database_trouble,
    load_settings,
    open_catalog,
    reason,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.command(short_help="Serve the memory tools to an assistant over standard input and output (MCP).")
@config_option
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="warning",
              show_default=True, help="How much to log (on standard error).")
def mcp(config: str | None, log_level: str) -> None:
    """Serve the memory tools over standard input and output, as an MCP server an assistant
    (Claude Desktop, Cursor, an Agno agent) starts itself, on the configured database.

    The process acts as the administrator: whoever can start it can read the database
    directly, so each tool takes a user_id to choose whose memories it works on. Standard
    output carries only the protocol; logs go to standard error. /mcp of `mnemo serve` serves
    the same tools over HTTP, with the API's credentials.

    Exit codes: 0 the client closed the connection; 1 a database cannot be reached or a table
    needs `mnemo migrate`; 2 a setting or the API document is wrong.
    """
    configure_logging(log_level)
    settings = load_settings(config)
    try:
        contract = Contract.load()
    except ContractError as error:
        raise WrongInput(str(error)) from None
    # Connexion, the app and the SDK load only for this command.
    from ..app import create_app
    from ..embedding_worker import running
    from ..mcp import stdio
    from ..mcp.access import LOCAL_ADMINISTRATOR
    from ..mcp.tools import Toolbox

    catalog = open_catalog(settings)
    with database_trouble(catalog, lambda error: f"cannot open the database: {reason(error)}"):
        catalog.prepare()
        app = create_app(settings, catalog=catalog, contract=contract, serves_http=False)
        # No ASGI server runs the app's lifespan here, so the embedding worker is started here.
        with running(catalog):
            anyio.run(stdio.serve, Toolbox(contract, app.app), LOCAL_ADMINISTRATOR)

