"""The ``mnemo`` command.

Exit codes: 0 success, 1 the service could not start or run (database unreachable, port
taken), 2 wrong usage or configuration (bad flag, invalid setting, broken API document).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from . import __version__

EXIT_FAILURE = 1
EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mnemo",
        description="Mnemo: a contract-first HTTP memory service for AI agents.",
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
        "(or OS_SECURITY_KEY), MNEMO_DB_ID, MNEMO_TABLE, MNEMO_VALIDATE_RESPONSES; "
        "or, for several databases, a config file (--config or MNEMO_CONFIG).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=7777, help="port to listen on (default %(default)s)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes; more than one runs gunicorn with uvicorn workers (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="how much to log (default %(default)s)",
    )
    serve.set_defaults(run=_serve)

    args = parser.parse_args(argv)
    # Connexion imports Starlette's test client at import time, which warns on every start.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    logging.basicConfig(
        level=args.log_level.upper() if hasattr(args, "log_level") else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.run(args)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _serve(args: argparse.Namespace) -> int:
    from connexion.exceptions import InvalidSpecification

    from storage import DatabaseUnavailable

    from .app import build_catalog, load_document
    from .config import ConfigError, Settings

    try:
        settings = Settings.from_env(config_path=args.config)
        load_document()
        # The schema is created once here, before any worker starts, so that workers never
        # race each other to create it.
        catalog = build_catalog(settings)
        catalog.create_schema()
        catalog.dispose()
    except (ConfigError, ValueError, InvalidSpecification) as error:
        print(f"mnemo: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseUnavailable as error:
        print(f"mnemo: cannot open the database: {error}", file=sys.stderr)
        return EXIT_FAILURE

    if args.config:
        # Workers build their app from the environment: hand the file on that way.
        os.environ["MNEMO_CONFIG"] = os.path.abspath(args.config)
    if args.workers == 1:
        import uvicorn

        uvicorn.run(
            "mnemo.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            timeout_graceful_shutdown=30,
        )
        return 0
    return _serve_with_gunicorn(args)


def _serve_with_gunicorn(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    class MnemoGunicorn(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("worker_class", "uvicorn_worker.UvicornWorker")
            self.cfg.set("loglevel", args.log_level)
            self.cfg.set("graceful_timeout", 30)

        def load(self):
            # Runs in each worker after the fork: every worker gets its own pools.
            from .app import create_app

            return create_app()

    MnemoGunicorn().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
