"""The gunicorn worker ``mnemo serve --workers N`` runs: uvicorn's, without its Server header
(no answer names the software behind it)."""

from __future__ import annotations

from uvicorn_worker import UvicornWorker


class MnemoWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "server_header": False}
