"""What the app factory hands the handlers, kept in Flask's ``app.extensions``."""

from __future__ import annotations

from flask import current_app

from storage import Catalog

from .config import ModelConfig

CATALOG = "mnemo.catalog"  # the Catalog of configured databases and their memory tables
METRICS = "mnemo.metrics"  # the metrics' mnemo.metrics.Exposition
MODEL = "mnemo.model"  # the language model settings of optimize-memories


def catalog() -> Catalog:
    return current_app.extensions[CATALOG]


def model() -> ModelConfig:
    return current_app.extensions[MODEL]


def metrics():
    return current_app.extensions[METRICS]
