"""What the commands share: the exit codes and the errors that end a command with one, the
options that name a database and a memory table, and opening the configured databases."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import click

from storage import Catalog, DatabaseUnavailable, SchemaError

from .. import logs
from ..config import ConfigError, Settings, log_format

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandFailed(click.ClickException):
    """The command could not do its job: a database cannot be reached, the port is taken, a
    table needs ``mnemo migrate``."""

    exit_code = EXIT_FAILURE

    def show(self, file=None) -> None:
        click.echo(f"mnemo: {lower_case(self.format_message())}", file=file, err=True)


class WrongInput(CommandFailed):
    """Wrong usage, a setting Mnemo cannot use, or input it cannot import."""

    exit_code = EXIT_USAGE


def lower_case(message: str) -> str:
    """``message`` as every line after "mnemo: " reads, starting lower-case. Storage words its
    errors for the API's ``detail``, as sentences; names (MNEMO_TABLE) keep their capitals."""
    if message[:1].isupper() and message[1:2].islower():
        return message[0].lower() + message[1:]
    return message


def configure_logging(level: str) -> None:
    """Every log line to standard error, from ``level`` up, in MNEMO_LOG_FORMAT."""
    try:
        chosen = log_format()
    except ConfigError as error:
        raise WrongInput(str(error)) from None
    logs.configure(level.upper(), chosen)
    # Alembic narrates every step at INFO; what Mnemo did is reported by Mnemo.
    logging.getLogger("alembic").setLevel(logging.WARNING)


config_option = click.option(
    "--config", metavar="FILE",
    help="TOML file declaring the databases (default: $MNEMO_CONFIG, else the environment's "
    "MNEMO_DATABASE_URL, MNEMO_DB_ID and MNEMO_TABLE).")
db_id_option = click.option("--db-id", metavar="ID", help="Database to use, by id (default: the first).")
table_option = click.option("--table", metavar="NAME",
                            help="Memory table to use (default: the database's first).")


def load_settings(config_path: str | None) -> Settings:
    """The settings of the environment and the config file, every one checked."""
    try:
        return Settings.from_env(config_path=config_path)
    except ConfigError as error:
        raise WrongInput(str(error)) from None


def open_catalog(settings: Settings) -> Catalog:
    """The configured databases, not yet opened."""
    try:
        return settings.catalog()
    except ValueError as error:  # a database URL Mnemo cannot use
        raise WrongInput(str(error)) from None


def chosen_database(settings: Settings, db_id: str | None) -> str:
    """The id of the database ``--db-id`` names, or of the first one."""
    try:
        return settings.database(db_id).db_id
    except ConfigError as error:
        raise WrongInput(str(error)) from None


@contextlib.contextmanager
def database_trouble(catalog: Catalog, unavailable: Callable[[Exception], str]) -> Iterator[None]:
    """Around work on ``catalog``, which is disposed of afterwards: a database that cannot be
    reached (worded by ``unavailable``) or a schema Mnemo cannot serve ends the command with
    exit code 1.

    Storage's own warning about an unreachable database is held back meanwhile: the command
    says it once, in its message.
    """
    storage_log = logging.getLogger("storage.database")
    level = storage_log.level
    storage_log.setLevel(logging.ERROR)
    try:
        yield
    except DatabaseUnavailable as error:
        raise CommandFailed(unavailable(error)) from None
    except SchemaError as error:
        raise CommandFailed(str(error)) from None
    finally:
        storage_log.setLevel(level)
        catalog.dispose()


def reason(error: Exception) -> str:
    """Why ``error`` happened, in the words of whatever failed: the file and the system's
    reason, or the database driver's (without SQLAlchemy's statement dump and help link)."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(getattr(error.__cause__, "orig", None) or error)


def memories(count: int) -> str:
    return f"{count} {'memory' if count == 1 else 'memories'}"
