"""Prometheus metrics, as ``GET /metrics`` exposes them.

With one worker, the process's own registry answers. With several (gunicorn), ``mnemo serve``
sets ``PROMETHEUS_MULTIPROC_DIR`` to a directory it makes fresh for each server start, before
any worker exists: every worker keeps its values in files there and whichever worker answers a
scrape adds them all up (prometheus_client's multiprocess mode), so a scrape sees the whole
server, not one worker. The directory is removed when the server stops, so no count ever
carries over from an earlier run.

The per-request cost is a dict lookup and three updates: each label combination's child is
made once and kept.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from storage import Catalog, DatabaseUnavailable

from .config import MULTIPROCESS_DIRECTORY

log = logging.getLogger(__name__)

# generate_latest writes the classic text format, version 0.0.4.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# The operation label of requests that no operation of the document answered (an unknown
# path, /docs, /openapi.json): a fixed word, so that made-up paths cannot add series.
UNROUTED = "none"

REQUESTS = Counter("mnemo_requests", "Requests answered, by operation (operationId) and HTTP status",
                   ["operation", "status"])
DURATION = Histogram(
    "mnemo_request_duration_seconds",
    "Time from a request's arrival to the last byte of its answer, by operation",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# livesum: the workers' values added up, leaving out workers that have exited.
CONNECTIONS_IN_USE = Gauge("mnemo_db_connections_in_use",
                           "Database connections taken from the pools, by database",
                           ["db_id"], multiprocess_mode="livesum")
CONNECTIONS_MAX = Gauge("mnemo_db_connections_max",
                        "Size of the connection pools (all workers together), by database",
                        ["db_id"], multiprocess_mode="livesum")

RATE_LIMIT_STORAGE_ERRORS = Counter(
    "mnemo_rate_limit_storage_errors",
    "Times the rate limit's shared storage (Redis) could not be reached; the worker then counts "
    "requests in its own memory for a few seconds")

EMBEDDED_BY_WORKER = Counter(
    "mnemo_embedding_worker_embedded",
    "Memories the embedding worker embedded (made findable by meaning), by database and table",
    ["db_id", "table"])
EMBEDDING_FAILURES = Counter(
    "mnemo_embedding_worker_failures",
    "Times the embedding worker could not embed: reason model (the embedding model did not "
    "answer), database (it could not be reached) or error (anything else, logged); it retries "
    "with backoff", ["reason"])

_counters: dict[tuple[str, int], Counter] = {}
_timers: dict[str, Histogram] = {}


def observe(operation: str | None, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    operation = operation or UNROUTED
    counter = _counters.get((operation, status))
    if counter is None:
        counter = _counters[operation, status] = REQUESTS.labels(operation, str(status))
    timer = _timers.get(operation)
    if timer is None:
        timer = _timers[operation] = DURATION.labels(operation)
    counter.inc()
    timer.observe(seconds)


def watch_pools(catalog: Catalog) -> None:
    """Keep the connection gauges of every database of ``catalog`` up to date."""
    for database in catalog.databases.values():
        in_use = CONNECTIONS_IN_USE.labels(database.db_id)
        size = database.watch_connections(in_use.inc, in_use.dec)
        if size is not None:
            CONNECTIONS_MAX.labels(database.db_id).set(size)


class StoredMemories:
    """How many memories each table holds, and how many of them wait for an embedding, read
    from the database at scrape time (the same answer in every worker, so it is not kept in
    the workers' files)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def collect(self):
        stored = GaugeMetricFamily("mnemo_memories_stored", "Memories stored, by database and table",
                                   labels=["db_id", "table"])
        backlog = GaugeMetricFamily("mnemo_embedding_backlog",
                                    "Memories waiting for the embedding worker, not yet findable by "
                                    "meaning, by database and table", labels=["db_id", "table"])
        up = GaugeMetricFamily("mnemo_database_up",
                               "1 when the database answered this scrape, 0 when it could not be reached",
                               labels=["db_id"])
        for database in self.catalog.databases.values():
            reached = 1
            for table, repository in database.repositories.items():
                try:
                    stored.add_metric([database.db_id, table], repository.count())
                    backlog.add_metric([database.db_id, table], repository.embedding_backlog())
                except DatabaseUnavailable:
                    reached = 0
                    break
            up.add_metric([database.db_id], reached)
        yield stored
        yield backlog
        yield up


class Exposition:
    """The whole server's metrics, in the Prometheus text format."""

    def __init__(self, catalog: Catalog):
        if os.environ.get(MULTIPROCESS_DIRECTORY):
            # Not registered anywhere: it reads the workers' files each time it is collected.
            self.sources = (MultiProcessCollector(None), StoredMemories(catalog))
        else:
            self.sources = (REGISTRY, StoredMemories(catalog))

    def collect(self):
        for source in self.sources:
            yield from source.collect()

    def render(self) -> bytes:
        return generate_latest(self)
