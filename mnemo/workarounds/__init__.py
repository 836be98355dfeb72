"""Connexion workarounds, all in one place: what Connexion 3.3 does not do, or does on every
request, that Mnemo needs otherwise.

- ``openapi31``: serve an OpenAPI 3.1 document (Connexion 3.3 refuses anything but 3.0) and
  validate with JSON Schema 2020-12; parse each JSON body once, with a depth limit; read
  integers from ASCII digits only. Delete when Connexion supports OpenAPI 3.1.
- ``dispatch``: decorate each handler once, not on every request; run a handler only for a
  request Connexion's routing matched. Delete the first when Connexion decorates once; the
  second when Connexion stops handing unrouted requests to Flask.
- ``bridge``: hand a request to its handler thread in one hop each way instead of a2wsgi's
  hop per message. Delete when Connexion's FlaskApp does so, or Mnemo leaves Flask.

Each was written for Connexion 3.3 (pyproject allows <4) and checks, where it is installed,
that Connexion still has the shape it relies on: if not, it leaves Connexion alone and logs a
warning, so the service still runs, as Connexion alone would. ``problems`` lists every such
mismatch, and tests/test_workarounds.py fails, naming the workaround, when an upgrade brings
one.
"""

from __future__ import annotations

from concurrent.futures import Executor

import connexion

from . import bridge, dispatch, openapi31


def flask_app(import_name: str, *, handlers: Executor, **options) -> connexion.FlaskApp:
    """A Connexion FlaskApp made with ``options``, every workaround in place, running its
    handlers on ``handlers``' threads."""
    openapi31.install()
    dispatch.install()
    app = connexion.FlaskApp(import_name, validator_map=openapi31.VALIDATOR_MAP,
                             uri_parser_class=openapi31.URIParser, **options)
    bridge.install(app, handlers)
    dispatch.only_routed(app.app)
    app.app.request_class = openapi31.ParsedJSONRequest
    return app


def problems() -> dict[str, str]:
    """Workaround name -> what of Connexion it relies on is no longer there; empty while all hold."""
    found = {"openapi31": openapi31.problem(), "dispatch": dispatch.problem(),
             "bridge": bridge.problem(connexion.FlaskApp(__name__))}
    return {name: trouble for name, trouble in found.items() if trouble}
