"""The ``mnemo`` command: a click group with one module per command.

Exit codes, as the README promises: 0 done; 1 the command could not do its job (a database
cannot be reached, the port is taken, a table needs ``mnemo migrate``, ``spec check`` found a
problem); 2 wrong usage or configuration, or input that cannot be imported. A command ends
with 1 or 2 by raising CommandFailed or WrongInput (mnemo.cli.common), which print
``mnemo: <why>`` on standard error. click itself gives 2 for a wrong flag or argument, and 1
when the reader of standard output goes away (``mnemo export - | head``), quietly.
"""

from __future__ import annotations

import warnings

import click

from .. import __version__
from .common import EXIT_FAILURE, EXIT_USAGE, CommandFailed, WrongInput, configure_logging
from .erase_user import erase_user
from .mcp import mcp
from .migrate import migrate
from .reindex import reindex
from .serve import serve
from .spec import spec
from .transfer import export, import_, import_agno

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CommandFailed", "WrongInput", "main"]


class Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        # In the order they are added, which is the order a newcomer needs them in.
        return list(self.commands)


@click.group(
    cls=Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Every command's exit codes: 0 success; 1 the command could not do its job (a "
    "database cannot be reached, the port is taken, a table needs `mnemo migrate`, `spec check` "
    "found a problem); 2 wrong usage or configuration (a bad flag or setting, an invalid "
    "openapi.yaml for serve, input that cannot be imported). `mnemo COMMAND --help` describes "
    "each command.",
)
@click.version_option(__version__, "--version", prog_name="mnemo", message="%(prog)s %(version)s")
def main() -> None:
    """Mnemo: a contract-first HTTP memory service for AI agents."""
    # Connexion imports Starlette's test client at import time, which warns on every start.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    configure_logging("info")


for command in (serve, migrate, reindex, export, import_, import_agno, erase_user, spec, mcp):
    main.add_command(command)
