"""Running the HTTP server for ``mnemo serve``: uvicorn for one worker, gunicorn with uvicorn
workers (mnemo.worker) for several. Both build each worker's app with ``create_app`` and speak
HTTP through mnemo.protocol.

With several workers, every worker keeps its metrics in files of a directory made for this run
(prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), removed when the server
stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import uvicorn
from gunicorn import util
from gunicorn.app.base import BaseApplication

from .config import MULTIPROCESS_DIRECTORY

log = logging.getLogger("mnemo")

# The app factory, by name: each server imports it in the process that serves (with gunicorn,
# each worker after the fork), so that every worker gets its own pools.
APP_FACTORY = "mnemo.app:create_app"

# uvicorn's httptools protocol with limits on heads and the time to send a request, and JSON for
# the answers it gives itself (mnemo.protocol). The gunicorn workers use it too (mnemo.worker).
HTTP_PROTOCOL = "mnemo.protocol:MnemoHttpProtocol"

# How long an idle keep-alive connection stays open (uvicorn's default is 5 s, gunicorn's 2 s).
# A client or proxy that sends on a connection just as the server closes it gets no answer,
# and a proxy turns that into a 502; one that holds idle connections (a load balancer keeps
# them 60 s by default) must find them open, so this outlasts the usual idle timeouts.
KEEP_ALIVE_S = 75

# How long requests in flight may take to finish once the server is told to stop.
GRACEFUL_TIMEOUT_S = 30


class ServerError(Exception):
    """The server could not start, or stopped on an error; its log says more."""


def check_port(host: str, port: int) -> None:
    """OSError unless ``host``:``port`` can be listened on now.

    Bound as uvicorn and gunicorn bind it, so a port they would refuse is found here, at once:
    uvicorn reported a taken port with its own exit code, and gunicorn only after retrying for
    seconds.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def run(host: str, port: int, workers: int, log_level: str, config_path: str | None) -> None:
    """Serve until told to stop; ServerError if the server could not start or failed.

    ``config_path``, the config file named on the command line, reaches the workers through
    the environment, where they read their settings.
    """
    master = os.getpid()
    try:
        with _environment(workers, config_path, master):
            if workers == 1:
                _run_uvicorn(host, port, log_level)
            else:
                _Gunicorn(host, port, workers, log_level).run()
    except SystemExit as exit_:
        # A gunicorn worker ends by raising SystemExit through the master's stack, where it was
        # forked: it must end that way, untouched.
        if os.getpid() != master or not exit_.code:
            raise
        raise ServerError(f"the server stopped with exit code {exit_.code}; the lines above "
                          "say why") from None


def _run_uvicorn(host: str, port: int, log_level: str) -> None:
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        http=HTTP_PROTOCOL,
        ws="none",
        host=host,
        port=port,
        log_level=log_level,
        # Its loggers hand their lines to the root logger, in Mnemo's format; mnemo.access
        # logs each request, so uvicorn's access log would only double it.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        timeout_keep_alive=KEEP_ALIVE_S,
        server_header=False,
    )


class _Gunicorn(BaseApplication):
    """gunicorn's master, configured here rather than from its command line or a file."""

    def __init__(self, host: str, port: int, workers: int, log_level: str):
        self.settings = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "mnemo.worker.MnemoWorker",
            "loglevel": log_level,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "keepalive": KEEP_ALIVE_S,
            "logger_class": "mnemo.worker.MnemoLogger",
            "child_exit": _worker_exited,
        }
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.settings.items():
            self.cfg.set(name, value)

    def load(self):
        return util.import_app(f"{APP_FACTORY}()")


def _worker_exited(_arbiter, worker) -> None:
    """Gunicorn's child_exit hook, in the master: the worker's gauges stop counting (its
    counters and histograms stay in the sums, as counters must)."""
    # prometheus_client chooses where its values live as it is first imported: not before
    # _environment has named the directory.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


@contextlib.contextmanager
def _environment(workers: int, config_path: str | None, master: int) -> Iterator[None]:
    """The environment the workers read: the config file, and with several workers a fresh
    metrics directory. Afterwards, in the master, the environment is as it was (whoever called
    serve, a test in-process, keeps its own) and the directory is gone."""
    saved = {name: os.environ.get(name) for name in (MULTIPROCESS_DIRECTORY, "MNEMO_CONFIG")}
    # One inherited from the environment is never used: its files would add an earlier run's
    # counts to this one's.
    os.environ.pop(MULTIPROCESS_DIRECTORY, None)
    directory = None
    try:
        if workers > 1:
            directory = tempfile.mkdtemp(prefix="mnemo-metrics-")
            os.environ[MULTIPROCESS_DIRECTORY] = directory
            log.info("workers keep their metrics in %s until the server stops", directory)
        if config_path:
            os.environ["MNEMO_CONFIG"] = os.path.abspath(config_path)
        yield
    finally:
        # A worker leaving (restarted, or one of several stopping) passes here too, and must
        # not take the directory the others still write to.
        if os.getpid() == master:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
