"""What ``mnemo serve --workers N`` runs under gunicorn: uvicorn's worker with Mnemo's HTTP
protocol (mnemo.protocol), without its Server header (no answer names the software behind it)
and without its access log (mnemo.access logs each request once), and gunicorn's logger writing
Mnemo's format."""

from __future__ import annotations

from gunicorn import glogging
from uvicorn_worker import UvicornWorker

from .config import log_format
from .logs import JsonFormatter
from .server import HTTP_PROTOCOL


class MnemoWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "http": HTTP_PROTOCOL, "ws": "none",
                     "server_header": False, "access_log": False}


class MnemoLogger(glogging.Logger):
    """Gunicorn's own lines (and uvicorn's, which its workers send the same way) as JSON objects
    when MNEMO_LOG_FORMAT=json; gunicorn's text otherwise."""

    def setup(self, cfg):
        super().setup(cfg)
        if log_format() == "json":
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())
