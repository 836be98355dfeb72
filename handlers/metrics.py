"""The service's own metrics, for Prometheus."""

from __future__ import annotations

from flask import Response

from mnemo import extensions
from mnemo.metrics import CONTENT_TYPE


def get_metrics():
    # A response of its own: its media type carries the format's version, which Connexion would
    # otherwise refuse as one the document does not list (the document says text/plain).
    return Response(extensions.metrics().render(), 200, content_type=CONTENT_TYPE)
