"""Every Connexion workaround still finds the Connexion it was written for (mnemo/workarounds)."""

from __future__ import annotations

from mnemo import workarounds


def test_every_connexion_workaround_still_fits_the_installed_connexion():
    problems = workarounds.problems()
    assert not problems, "a Connexion upgrade broke these workarounds (mnemo/workarounds): " + "; ".join(
        f"{name}: {trouble}" for name, trouble in problems.items())


def test_the_app_has_every_workaround_in_place(app):
    from connexion.apps.flask import FlaskOperation

    assert FlaskOperation.fn is workarounds.dispatch._FN
    assert isinstance(app._middleware_app.asgi_app, workarounds.bridge.BufferedWSGI)
    assert app.app.request_class is workarounds.openapi31.ParsedJSONRequest
    assert not app.app.url_map.merge_slashes
