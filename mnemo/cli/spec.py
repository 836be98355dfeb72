"""mnemo spec check and mnemo spec scaffold: the API document and the handlers it routes to.

Both work on the checkout they are run from: ./openapi.yaml when the current directory holds
one, and handlers imported from the current directory first. Installed with ``pip install .``,
mnemo would otherwise read the document it ships with and write stubs into site-packages.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from ..contract import Contract, ContractError, ContractUnreadable, document_path
from ..spec import KINDS, OK, ScaffoldError, check, scaffold
from .common import EXIT_FAILURE, CommandFailed, WrongInput

DOCUMENT = "openapi.yaml"


@click.group(short_help="Check the API document against the handlers, or scaffold the missing ones.")
def spec() -> None:
    """Work on the contract, openapi.yaml, and the handlers it routes to.

    Run from a directory holding an openapi.yaml (a checkout), both commands read that one and
    import handlers from that directory first; elsewhere they read the document mnemo serves.
    """


document_option = click.option(
    "--spec", "document", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
    help=f"The API document (default: ./{DOCUMENT} when there is one, else the one mnemo serves).")


@spec.command("check", short_help="The document is valid and routes every operation to a handler, and back.")
@document_option
@click.pass_context
def check_command(ctx: click.Context, document: Path | None) -> None:
    """Check that the API document is valid OpenAPI 3.1, that every operationId resolves to a
    handler function, that no handler is a scaffolded stub, and that every public handler
    function is named by an operation. Prints the document it read, then one line per
    operation and handler.

    Exit codes: 0 all agree; 1 a problem was found; 2 the document cannot be read.
    """
    contract = _read(ctx, document)
    with _handlers_from_here():
        findings = check(contract)
    width = max(map(len, KINDS))
    for finding in findings:
        detail = f": {finding.detail}" if finding.detail else ""
        click.echo(f"  {finding.kind:<{width}}  {finding.subject}{detail}")
    problems = [finding for finding in findings if finding.kind != OK]
    if not problems:
        click.echo(f"spec check: every operation has a handler and every handler an operation "
                   f"({len(findings)} checked)")
        return
    counts = ", ".join(f"{sum(f.kind == kind for f in problems)} {kind}" for kind in KINDS
                       if any(f.kind == kind for f in problems))
    click.echo(f"spec check: {len(problems)} problem{'s' if len(problems) > 1 else ''} ({counts})")
    ctx.exit(EXIT_FAILURE)


@spec.command("scaffold", short_help="Write handler stubs for operations that have none.")
@document_option
@click.pass_context
def scaffold_command(ctx: click.Context, document: Path | None) -> None:
    """For each operation whose handler does not exist, write a stub function in the module
    its x-openapi-router-controller names (creating the module, or appending to it). Prints
    the document it read and each file it writes.

    A stub answers 501 with error_code NOT_IMPLEMENTED and `mnemo spec check` lists it as not
    implemented until its @not_implemented mark is removed: stubs are for developers, never to
    be committed.

    Exit codes: 0 written (or nothing to write); 1 the document is invalid or a stub has nowhere
    to go; 2 the document cannot be read.
    """
    contract = _read(ctx, document)
    try:
        with _handlers_from_here():
            written = scaffold(contract)
    except ScaffoldError as error:
        raise CommandFailed(str(error)) from None
    if not written:
        click.echo(f"{contract.path}: every operation has a handler; nothing to scaffold")
    for file, operations in written:
        names = ", ".join(operation.function for operation in operations)
        click.echo(f"{file}: stubbed {names} (each answers 501 until implemented)")


def _read(ctx: click.Context, document: Path | None) -> Contract:
    """The document ``--spec`` names, else ./openapi.yaml, else the one mnemo serves, validated;
    the first line of output names it. One that is not valid is a problem found (exit 1)."""
    local = Path.cwd() / DOCUMENT
    try:
        contract = Contract.load(document or (local if local.is_file() else document_path()))
    except ContractUnreadable as error:
        raise WrongInput(str(error)) from None
    except ContractError as error:
        click.echo(str(error))
        ctx.exit(EXIT_FAILURE)
    click.echo(f"{contract.path}: valid OpenAPI {contract.document['openapi']}")
    return contract


@contextlib.contextmanager
def _handlers_from_here() -> Iterator[None]:
    """The current directory first on sys.path while handlers are imported, as ``python -m``
    would have it: a checkout's handlers, not the installed ones, answer for its document."""
    here = str(Path.cwd())
    sys.path.insert(0, here)
    try:
        yield
    finally:
        sys.path.remove(here)
