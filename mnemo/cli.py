"""The ``mnemo`` command.

Exit codes: 0 success; 1 the command could not do its job (database unreachable, port taken,
a table that needs ``mnemo migrate``, a problem ``spec check`` found); 2 wrong usage or
configuration (bad flag, invalid setting, broken API document for serve) or input that
cannot be imported.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .config import MULTIPROCESS_DIRECTORY

EXIT_FAILURE = 1
EXIT_USAGE = 2

log = logging.getLogger("mnemo")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Connexion imports Starlette's test client at import time, which warns on every start.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from . import logs
    from .config import ConfigError, log_format

    try:
        chosen_format = log_format()
    except ConfigError as error:
        print(f"mnemo: {error}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(args.log_level.upper() if hasattr(args, "log_level") else "INFO", chosen_format)
    # Alembic narrates every step at INFO; what Mnemo did is reported by Mnemo.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return args.run(args)
    except Stop as stop:
        print(f"mnemo: {stop}", file=sys.stderr)
        return stop.code


class Stop(Exception):
    """Ends a command with exit code ``code``; its message says why (main prints it)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _open_catalog(args: argparse.Namespace, db_id: str | None = None):
    """The configured databases as a catalog, and the id of the one ``db_id`` names (the
    first without it); Stop with exit code 2 for settings Mnemo cannot use."""
    from .app import build_catalog
    from .config import ConfigError, Settings

    try:
        settings = Settings.from_env(config_path=args.config)
        chosen = settings.database(db_id).db_id
        return build_catalog(settings), chosen
    except (ConfigError, ValueError) as error:
        raise Stop(EXIT_USAGE, str(error)) from None


@contextlib.contextmanager
def _database_trouble(catalog, unavailable: Callable[[Exception], str]):
    """Around work on ``catalog``, which is disposed of afterwards: an unreachable database
    (worded by ``unavailable``) or a schema Mnemo cannot serve is a Stop with exit code 1."""
    from storage import DatabaseUnavailable, SchemaError

    try:
        yield
    except DatabaseUnavailable as error:
        raise Stop(EXIT_FAILURE, unavailable(error)) from None
    except SchemaError as error:
        raise Stop(EXIT_FAILURE, str(error)) from None
    finally:
        catalog.dispose()


def build_parser() -> argparse.ArgumentParser:
    """The ``mnemo`` command line: each verb's options and what runs it."""
    parser = argparse.ArgumentParser(
        prog="mnemo",
        description="Mnemo: a contract-first HTTP memory service for AI agents.",
        epilog="exit codes: 0 success; 1 the command could not do its job (database unreachable, "
        "a table needs `mnemo migrate`, `spec check` found a problem); 2 wrong usage or "
        "configuration (bad flag or setting, invalid openapi.yaml for serve, input that cannot be "
        "imported). `mnemo COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"mnemo {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    # Options every verb that opens a database takes.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file declaring the databases (default: $MNEMO_CONFIG, else the environment)",
    )

    serve = verbs.add_parser(
        "serve",
        parents=[common],
        help="serve the memory API over HTTP",
        description="Serve the memory API. Settings come from the environment: "
        "MNEMO_DATABASE_URL (default sqlite:///./memories.db), MNEMO_SECURITY_KEY "
        "(or OS_SECURITY_KEY), MNEMO_JWT_VERIFICATION_KEY (or JWT_VERIFICATION_KEY), "
        "MNEMO_JWT_ALGORITHM, MNEMO_JWT_AUDIENCE, MNEMO_MAX_BODY_BYTES, MNEMO_MAX_HEADER_BYTES, "
        "MNEMO_MAX_TOKEN_BYTES, MNEMO_HEADER_TIMEOUT, MNEMO_BODY_TIMEOUT, MNEMO_RATE_LIMIT, "
        "MNEMO_RATE_LIMIT_STORAGE, MNEMO_RATE_LIMIT_PREFIX, "
        "MNEMO_CORS_ORIGINS, MNEMO_METRICS_TOKEN, MNEMO_LOG_FORMAT, MNEMO_DB_ID, MNEMO_TABLE, "
        "MNEMO_VALIDATE_RESPONSES; "
        "or, for several databases, a config file (--config or MNEMO_CONFIG).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=7777, help="port to listen on (default %(default)s)")
    serve.add_argument(
        "--workers",
        type=_positive,
        # Each worker is an event loop plus a thread pool bound by the GIL: one per core keeps
        # every core busy without processes fighting over them.
        default=os.cpu_count() or 1,
        help="worker processes; more than one runs gunicorn with uvicorn workers "
        "(default: one per core, %(default)s here)",
    )
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="first upgrade every table family that is behind the current schema revision "
        "(without it, serve refuses such a database and exits 1; families that do not exist yet "
        "are always created)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="how much to log (default %(default)s)",
    )
    serve.set_defaults(run=_serve)

    migrate = verbs.add_parser(
        "migrate",
        parents=[common],
        help="upgrade every configured memory table to the current schema revision",
        description="Upgrade every configured memory table family of every configured database to "
        "the current schema revision (Alembic's head), creating families that do not exist yet and "
        "recording tables made before Mnemo versioned its schema, and putting back a PostgreSQL "
        "search trigger that a partial restore left out. Each family is upgraded in one "
        "transaction; several processes may run this at once. Settings as for serve. Exit codes: "
        "0 every family is at head, 1 a database cannot be reached or a family cannot be upgraded "
        "(or, with --check, one is not at head or needs repair), 2 wrong usage or configuration.",
    )
    migrate.add_argument("--check", action="store_true",
                         help="change nothing: report where each family stands and exit 1 unless all "
                         "are at head and whole")
    migrate.set_defaults(run=_migrate)

    # Which memory table export and import work on.
    target = argparse.ArgumentParser(add_help=False, parents=[common])
    target.add_argument("--db-id", metavar="ID", help="database to use, by id (default: the first)")
    table_help = "memory table to use (default: the database's first)"

    export = verbs.add_parser(
        "export",
        parents=[target],
        help="write every memory of a table as JSON lines",
        description="Write every memory of one memory table to FILE as JSON lines, one memory per "
        "line, in memory_id order. Settings as for serve (MNEMO_DATABASE_URL or --config).",
    )
    export.add_argument("file", metavar="FILE", help="where to write; - for standard output")
    export.add_argument("--table", help=table_help)
    export.set_defaults(run=_export)

    load = verbs.add_parser(
        "import",
        parents=[target],
        help="add the memories of a JSON lines file to a table",
        description="Add the memories of FILE (JSON lines, as export writes them) to one memory "
        "table, keeping their ids and times; missing ids and times are generated. Each batch of "
        "lines is checked in full, then written in one transaction; a bad line stops "
        "the import with exit code 2, naming the line. Settings as for serve.",
    )
    load.add_argument("file", metavar="FILE", help="what to read; - for standard input")
    load.add_argument("--table", help=table_help)
    load.set_defaults(run=_import)

    agno = verbs.add_parser(
        "import-agno",
        parents=[target],
        help="copy the memories of an Agno database into a table",
        description="Copy the memories of an Agno SqliteDb or PostgresDb database into one memory "
        "table, keeping ids, topics, owners and times. The Agno database is only read.",
    )
    agno.add_argument("--from", dest="source", required=True, metavar="URL",
                      help="SQLAlchemy URL of the Agno database, e.g. sqlite:///agno.db or "
                      "postgresql+psycopg://ai:ai@localhost:5532/ai")
    agno.add_argument("--table", default="agno_memories",
                      help="Agno's memory table (default %(default)s)")
    agno.add_argument("--schema",
                      help="schema of Agno's memory table (default: ai for PostgreSQL, none for SQLite)")
    agno.add_argument("--to-table", metavar="TABLE", help="Mnemo memory table to fill (default: "
                      "the database's first)")
    agno.set_defaults(run=_import_agno)

    erase = verbs.add_parser(
        "erase-user",
        parents=[target],
        help="erase everything stored about one user",
        description="Erase one user's memories with their topics, history and statistics from "
        "one memory table, as DELETE /users/{user_id}/memories does, for any user id that is "
        "stored: also one the API no longer accepts, such as an id ending in a newline that "
        'was stored before the API refused them. Prints {"deleted": N}. Settings as for serve.',
    )
    erase.add_argument("user_id", metavar="USER_ID", help="the user id exactly as stored (in bash, "
                       "$'...' writes control characters: $'nl-user\\n')")
    erase.add_argument("--table", help=table_help)
    erase.set_defaults(run=_erase_user)

    spec = verbs.add_parser(
        "spec",
        help="check the API document against the handlers, or scaffold the missing ones",
        description="Work on the contract, openapi.yaml, and the handlers it routes to.",
    )
    spec_verbs = spec.add_subparsers(dest="spec_verb", metavar="ACTION", required=True)
    document = argparse.ArgumentParser(add_help=False)
    document.add_argument("--spec", metavar="FILE",
                          help="the API document (default: the one mnemo serves)")
    check = spec_verbs.add_parser(
        "check",
        parents=[document],
        help="the document is valid and routes every operation to a handler, and back",
        description="Check that the API document is valid OpenAPI 3.1, that every operationId "
        "resolves to a handler function, that no handler is a scaffolded stub, and that every "
        "public handler function is named by an operation. Prints one line per operation and "
        "handler. Exit codes: 0 all agree, 1 a problem was found, 2 the document cannot be read.",
    )
    check.set_defaults(run=_spec_check)
    stub = spec_verbs.add_parser(
        "scaffold",
        parents=[document],
        help="write handler stubs for operations that have none",
        description="For each operation whose handler does not exist, write a stub function in the "
        "module its x-openapi-router-controller names (creating the module, or appending to it). A "
        "stub answers 501 with error_code NOT_IMPLEMENTED and `mnemo spec check` lists it as not "
        "implemented until its @not_implemented mark is removed: stubs are for developers, never to "
        "be committed. Exit codes: 0 written (or nothing to write), 1 the document is invalid or a "
        "stub has nowhere to go, 2 the document cannot be read.",
    )
    stub.set_defaults(run=_spec_scaffold)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _serve(args: argparse.Namespace) -> int:
    # Before anything imports prometheus_client, which chooses where values live as it loads.
    inherited = os.environ.pop(MULTIPROCESS_DIRECTORY, None)
    metrics_directory = _own_metrics_directory(args.workers)
    try:
        return _serve_configured(args)
    finally:
        # As it was: whoever called serve (a test, in-process) keeps its own environment.
        os.environ.pop(MULTIPROCESS_DIRECTORY, None)
        if inherited is not None:
            os.environ[MULTIPROCESS_DIRECTORY] = inherited
        if metrics_directory is not None:
            shutil.rmtree(metrics_directory, ignore_errors=True)


def _own_metrics_directory(workers: int) -> str | None:
    """With several workers, a fresh PROMETHEUS_MULTIPROC_DIR for them to keep their metrics in
    (its path); with one, none at all. One inherited from the environment is never used: its
    files would add an earlier run's counts to this one's."""
    if workers == 1:
        return None
    directory = tempfile.mkdtemp(prefix="mnemo-metrics-")
    os.environ[MULTIPROCESS_DIRECTORY] = directory
    log.info("workers keep their metrics in %s until the server stops", directory)
    return directory


def _serve_configured(args: argparse.Namespace) -> int:
    from storage import Status

    from .contract import Contract, ContractError

    catalog, _ = _open_catalog(args)
    try:
        Contract.load()
    except ContractError as error:
        catalog.dispose()
        raise Stop(EXIT_USAGE, str(error)) from None
    with _database_trouble(catalog, lambda error: f"cannot open the database: {error}"):
        # The schema is settled once here, before any worker starts, so that workers never
        # race each other to create or migrate it.
        for database in catalog.databases.values():
            for before in database.prepare(migrate=args.migrate):
                if before.status is not Status.CURRENT:
                    log.info("database %r, table %r: %s", database.db_id, before.table, _upgraded(before))

    if args.config:
        # Workers build their app from the environment: hand the file on that way.
        os.environ["MNEMO_CONFIG"] = os.path.abspath(args.config)
    if args.workers == 1:
        import uvicorn

        uvicorn.run(
            "mnemo.app:create_app",
            factory=True,
            http=HTTP_PROTOCOL,
            ws="none",
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            # Its loggers hand their lines to the root logger, in Mnemo's format; mnemo.access
            # logs each request, so uvicorn's access log would only double it.
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=30,
            timeout_keep_alive=KEEP_ALIVE_S,
            server_header=False,
        )
        return 0
    return _serve_with_gunicorn(args)


def _migrate(args: argparse.Namespace) -> int:
    from storage import Status

    catalog, _ = _open_catalog(args)
    behind = 0
    database = None
    # Database by database, in configuration order; each family is its own transaction, so a
    # failure leaves the families already upgraded at head.
    with _database_trouble(catalog, lambda error: f"cannot open database {database.db_id!r}: "
                                                  f"{_reason(error)}"):
        for database in catalog.databases.values():
            if args.check:
                states = database.schema_states()
                behind += sum(state.status is not Status.CURRENT for state in states)
                for state in states:
                    print(f"{database.db_id}/{state.table}: {state.describe()}")
                continue
            for before in database.prepare(migrate=True):
                print(f"{database.db_id}/{before.table}: {_upgraded(before)}")
    if behind:
        print(f"mnemo: {behind} table famil{'y' if behind == 1 else 'ies'} to upgrade or repair; "
              "run `mnemo migrate`", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _upgraded(before) -> str:
    from storage import Status
    from storage.migration import BASELINE

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


def _spec_document(args: argparse.Namespace) -> tuple[Path, dict | None, int]:
    """The document ``--spec`` names (or the served one), parsed and validated; on failure
    (path, None, exit code), having said why."""
    import yaml
    from connexion.exceptions import InvalidSpecification

    from .contract import ContractError, document_path, validate_document

    path = Path(args.spec) if args.spec else document_path()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        print(f"mnemo: cannot read {path}: {error.strerror}", file=sys.stderr)
        return path, None, EXIT_USAGE
    except yaml.YAMLError as error:
        print(f"{path}: not YAML: {error}")
        return path, None, EXIT_FAILURE
    try:
        if not isinstance(document, dict):
            raise InvalidSpecification("the document is not a mapping")
        validate_document(document)
    except (InvalidSpecification, ContractError) as error:
        print(f"{path}: {error}")
        return path, None, EXIT_FAILURE
    return path, document, 0


def _spec_check(args: argparse.Namespace) -> int:
    from .spec import KINDS, OK, check

    path, document, code = _spec_document(args)
    if document is None:
        return code
    findings = check(document)
    print(f"{path}: valid OpenAPI {document['openapi']}")
    width = max(map(len, KINDS))
    for finding in findings:
        detail = f": {finding.detail}" if finding.detail else ""
        print(f"  {finding.kind:<{width}}  {finding.subject}{detail}")
    problems = [finding for finding in findings if finding.kind != OK]
    if not problems:
        print(f"spec check: every operation has a handler and every handler an operation "
              f"({len(findings)} checked)")
        return 0
    counts = ", ".join(f"{sum(f.kind == kind for f in problems)} {kind}" for kind in KINDS
                       if any(f.kind == kind for f in problems))
    print(f"spec check: {len(problems)} problem{'s' if len(problems) > 1 else ''} ({counts})")
    return EXIT_FAILURE


def _spec_scaffold(args: argparse.Namespace) -> int:
    from .spec import ScaffoldError, scaffold

    path, document, code = _spec_document(args)
    if document is None:
        return code
    try:
        written = scaffold(document)
    except ScaffoldError as error:
        print(f"mnemo: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not written:
        print(f"{path}: every operation has a handler; nothing to scaffold")
    for file, operations in written:
        names = ", ".join(operation.function for operation in operations)
        print(f"{file}: stubbed {names} (each answers 501 until implemented)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .transfer import export_memories

    return _transfer(args, args.table, "exported", export_memories, file_mode="wb")


def _import(args: argparse.Namespace) -> int:
    from .transfer import import_lines

    def run(repository, lines, progress):
        if args.file != "-":
            progress.total_bytes = os.fstat(lines.fileno()).st_size
        import_lines(repository, lines, progress)
        repository.refresh_statistics()

    return _transfer(args, args.table, "imported", run, file_mode="rb")


def _import_agno(args: argparse.Namespace) -> int:
    from .transfer import import_agno

    def run(repository, progress):
        import_agno(repository, args.source, args.table, args.schema, progress)
        repository.refresh_statistics()

    return _transfer(args, args.to_table, "imported", run)


def _erase_user(args: argparse.Namespace) -> int:
    from storage import CatalogError

    catalog, db_id = _open_catalog(args, args.db_id)
    with _database_trouble(catalog, lambda error: f"cannot use the database: {_reason(error)}"):
        try:
            repository = catalog.repository(db_id, args.table)
            catalog.databases[db_id].prepare()
            deleted = repository.erase_user(args.user_id)
        except CatalogError as error:
            raise Stop(EXIT_USAGE, str(error)) from None
    print(f'{{"deleted": {deleted}}}')
    return 0


def _transfer(args: argparse.Namespace, table: str | None, verb: str, run: Callable,
              file_mode: str | None = None) -> int:
    """Run ``run(repository, [stream,] progress)`` on the chosen memory table, with FILE opened
    when ``file_mode`` says so; print the summary, or why it stopped."""
    from storage import CatalogError
    from storage.agno_source import SourceUnavailable

    from .transfer import BadInput, Progress

    catalog, db_id = _open_catalog(args, args.db_id)
    progress = Progress(verb)
    with _database_trouble(catalog, lambda error: f"cannot use the database: {_reason(error)}"
                                                  f"{_so_far(progress)}"):
        try:
            repository = catalog.repository(db_id, table)
            # Only the database in use: another one being down is no reason to refuse.
            catalog.databases[db_id].prepare()
            if file_mode is None:
                run(repository, progress)
            else:
                try:
                    stream = _open_binary(args.file, file_mode)
                except OSError as error:
                    raise Stop(EXIT_USAGE, f"cannot open {error.filename}: {error.strerror}") from None
                with stream as handle:
                    run(repository, handle, progress)
        except (CatalogError, BadInput) as error:
            raise Stop(EXIT_USAGE, str(error)) from None
        except SourceUnavailable as error:
            raise Stop(EXIT_FAILURE, f"{error}{_so_far(progress)}") from None
        except BrokenPipeError:
            # The reader went away (export - | head): not worth a traceback, nor another one
            # when Python flushes standard output on the way out.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILURE
        except OSError as error:
            raise Stop(EXIT_FAILURE, f"{_reason(error)}{_so_far(progress)}") from None
    print(progress.summary(), file=sys.stderr)
    return 0


def _so_far(progress) -> str:
    return f"; {progress.count} memories were {progress.verb} before it stopped" if progress.count else ""


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    # The driver's own words, without SQLAlchemy's statement dump and help link.
    return str(getattr(error.__cause__, "orig", None) or error)


def _open_binary(path: str, mode: str):
    """The file at ``path``, or standard input/output for ``-``, as a binary stream."""
    if path == "-":
        # Not closed afterwards: it is the process's, not this command's.
        return contextlib.nullcontext((sys.stdin if "r" in mode else sys.stdout).buffer)
    return open(path, mode)


# uvicorn's httptools protocol with limits on heads and the time to send a request, and JSON for
# the answers it gives itself (mnemo.protocol). The gunicorn workers use it too (mnemo.worker).
HTTP_PROTOCOL = "mnemo.protocol:MnemoHttpProtocol"

# How long an idle keep-alive connection stays open (uvicorn's default is 5 s, gunicorn's 2 s).
# A client or proxy that sends on a connection just as the server closes it gets no answer,
# and a proxy turns that into a 502; one that holds idle connections (a load balancer keeps
# them 60 s by default) must find them open, so this outlasts the usual idle timeouts.
KEEP_ALIVE_S = 75


def _serve_with_gunicorn(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    class MnemoGunicorn(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("worker_class", "mnemo.worker.MnemoWorker")
            self.cfg.set("loglevel", args.log_level)
            self.cfg.set("graceful_timeout", 30)
            self.cfg.set("keepalive", KEEP_ALIVE_S)
            self.cfg.set("logger_class", "mnemo.worker.MnemoLogger")
            self.cfg.set("child_exit", _worker_exited)

        def load(self):
            # Runs in each worker after the fork: every worker gets its own pools.
            from .app import create_app

            return create_app()

    MnemoGunicorn().run()
    return 0


def _worker_exited(_arbiter, worker) -> None:
    """Gunicorn's child_exit hook, in the master: the worker's gauges stop counting (its
    counters and histograms stay in the sums, as counters must)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


if __name__ == "__main__":
    sys.exit(main())
