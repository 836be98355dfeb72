"""Connexion's FlaskApp, minus the work it redoes on every request.

Why this module exists: Connexion 3.3 wraps a handler in its parameter and response decorators
anew on every request. ``FlaskOperation.fn`` makes a new ``FlaskDecorator`` each time, whose
wrapper then decorates the handler again (reading its signature with ``inspect``) and builds
a new URI parser for the operation. Nothing of that depends on the request: the decorators
read the request and the current operation when they run, not when they are made, and an
operation's URI parser holds only the operation's parameter definitions, so once per
operation is enough (what it saves: docs/PERFORMANCE.md).

What it changes, and nothing else: each FlaskOperation decorates its handler once, and keeps
one URI parser per operation it serves. Written for Connexion 3.3; delete it when Connexion
decorates once itself (``only_routed``: when Connexion stops handing unrouted requests to
Flask). If Connexion's classes no longer have the shape this relies on, ``install`` leaves
them alone and says so.

``only_routed`` is the other half of dispatch: Connexion hands a request its routing matched
no operation for on to Flask (so that an app may have routes of its own; Mnemo has none), and
Flask routes by rules of its own, which merged ``//memories`` into ``/memories`` and ran the
handler without the operation's security or validation. With it, Flask runs a handler only
for a request Connexion routed, and its rules match paths as Connexion's do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import flask
from connexion.apps.flask import FlaskOperation
from connexion.context import operation
from connexion.decorators import FlaskDecorator
from connexion.middleware.abstract import ROUTING_CONTEXT
from werkzeug.exceptions import NotFound
from werkzeug.routing import PathConverter

log = logging.getLogger(__name__)


class DecoratedOnce(FlaskDecorator):
    """Connexion's FlaskDecorator, decorating the handler when it is made rather than on
    every call."""

    def __call__(self, function: Callable) -> Callable:
        decorated = self.decorate(function)
        parsers: dict[int, object] = {}

        @functools.wraps(function)
        def wrapper(*_args, **_kwargs):
            current = operation._get_current_object()
            parser = parsers.get(id(current))
            if parser is None:
                # Keyed by identity, and the operation kept alive with it, so an id is never
                # reused for another operation while its parser is remembered.
                parser = parsers[id(current)] = (current, self.uri_parser)
            return decorated(self.framework.get_request(uri_parser=parser[1]))

        return wrapper


def _decorated_once(self: FlaskOperation) -> Callable:
    function = self.__dict__.get("_decorated_once")
    if function is None:
        function = DecoratedOnce(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)
        self.__dict__["_decorated_once"] = function
    return function


def problem() -> str | None:
    """What of Connexion this module relies on is no longer there; None while it all is."""
    if FlaskOperation.__dict__.get("fn") is _FN:
        return None
    missing = [name for name, ok in (
        ("FlaskOperation.fn as a property", isinstance(FlaskOperation.__dict__.get("fn"), property)),
        ("FlaskDecorator.decorate", callable(getattr(FlaskDecorator, "decorate", None))),
        ("FlaskDecorator.uri_parser as a property", isinstance(getattr(FlaskDecorator, "uri_parser", None),
                                                                property)),
        ("FlaskDecorator.framework.get_request", hasattr(FlaskDecorator, "framework")),
    ) if not ok]
    return ("Connexion no longer has " + ", ".join(missing)) if missing else None


def install() -> None:
    """Make every FlaskOperation decorate its handler once. Idempotent."""
    if FlaskOperation.__dict__.get("fn") is _FN:
        return
    trouble = problem()
    if trouble:
        log.warning("workaround dispatch not installed, handlers are decorated on every request: %s",
                    trouble)
        return
    FlaskOperation.fn = _FN  # type: ignore[method-assign]


_FN = property(_decorated_once)


class AnyPath(PathConverter):
    """A ``format: path`` parameter as Starlette reads it for Connexion's routing: any text,
    slashes included, also at its start (Werkzeug's own refuses a leading slash)."""

    regex = ".+?"
    part_isolating = False


def only_routed(flask_app: flask.Flask) -> None:
    """Have ``flask_app`` run a handler only for a request Connexion's routing matched, with
    rules that match paths as Connexion's do."""
    flask_app.url_map.merge_slashes = False
    flask_app.url_map.converters["path"] = AnyPath

    @flask_app.before_request
    def refuse_unrouted() -> None:
        scope = flask.request.environ.get("asgi.scope") or {}
        if not scope.get("extensions", {}).get(ROUTING_CONTEXT, {}).get("operation_id"):
            raise NotFound()
