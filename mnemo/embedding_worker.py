"""The embedding worker: a background thread that embeds the memories waiting for a vector.

Memories wait in each table family's queue when the model is remote (a write never waits on a
network), when an in-process embed failed, and, after upgrading to schema 0007, every memory
written before it. The worker goes over every memory table of the catalog, embedding batches
while a table has work, and sleeps POLL_S seconds when none has.

When the model or a database cannot answer, the worker logs one warning for the outage, not one
per retry, and tries again after a delay that doubles from POLL_S up to MAX_BACKOFF_S. So once
the model answers again, the memories that waited are embedded, and findable by meaning, within
MAX_BACKOFF_S + POLL_S seconds plus the time their batches take. A database's outage holds back
only that database's tables; the model's, every table it embeds for.

A table whose recorded model is not this server's gets nothing from the worker (storage stores
no vector of another model): the worker logs that ``mnemo reindex`` is needed, once, and looks
at that table again only every MAX_BACKOFF_S seconds.

Every server process runs one worker (each gunicorn worker, and ``mnemo mcp``). Two workers
may embed the same memory at once; storage stores a vector only if the memory still holds the
text it was made from, so the worst case is a model call spent twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from storage import Catalog, DatabaseUnavailable, MemoryRepository

from .embeddings import EmbeddingUnavailable
from .metrics import EMBEDDED_BY_WORKER, EMBEDDING_FAILURES

log = logging.getLogger("mnemo")

# Seconds between looks at the queues when they were empty, and the first retry's delay.
POLL_S = 1.0
# The longest wait between retries while the model or a database is down.
MAX_BACKOFF_S = 30.0
# Memories embedded per call: one transaction, and at most a few requests to the model.
BATCH = 64
# Seconds shutdown waits for a batch in flight before leaving the daemon thread to die.
STOP_TIMEOUT_S = 5.0


@dataclass
class Outage:
    """Whether one thing the worker needs (the model, or a database) failed, and when to try
    it again."""

    what: str
    failing: bool = False
    delay_s: float = 0.0
    retry_at: float = 0.0

    def failed(self, error: Exception, now: float, poll_s: float, max_backoff_s: float) -> None:
        if not self.failing:
            log.warning("embedding worker: %s: %s; memories stay queued and are embedded once "
                        "it answers (retrying with backoff up to %g s)", self.what, error, max_backoff_s)
        self.failing = True
        self.delay_s = min(max_backoff_s, self.delay_s * 2 if self.delay_s else poll_s)
        self.retry_at = now + self.delay_s

    def answered(self) -> None:
        if self.failing:
            log.info("embedding worker: %s answers again; embedding the queued memories", self.what)
        self.failing, self.delay_s, self.retry_at = False, 0.0, 0.0


@dataclass
class Table:
    """One memory table the worker embeds for, and the outages that hold it back."""

    db_id: str
    name: str
    repository: MemoryRepository
    database: Outage
    model: Outage
    embedded: object = field(default=None)  # its count of memories embedded
    other_model: bool = False  # told to run `mnemo reindex`
    held_until: float = 0.0  # after a failure of its own, not the model's or the database's

    def due(self) -> tuple[float, ...]:
        return self.database.retry_at, self.model.retry_at, self.held_until

    def waiting(self, now: float) -> bool:
        return now < max(self.due())


class EmbeddingWorker:
    """The thread that drains the embedding queues of ``catalog``'s tables; ``start`` and
    ``stop`` it, or use ``running``."""

    def __init__(self, catalog: Catalog, poll_s: float | None = None, max_backoff_s: float | None = None,
                 batch: int = BATCH):
        # Read when the worker is made, not imported, so a test can shorten them.
        self.poll_s = POLL_S if poll_s is None else poll_s
        self.max_backoff_s = MAX_BACKOFF_S if max_backoff_s is None else max_backoff_s
        self.batch = batch
        models: dict[int, Outage] = {}
        self.tables: list[Table] = []
        for database in catalog.databases.values():
            outage = Outage(f"database {database.db_id!r} cannot be reached")
            for name, repository in database.repositories.items():
                embedder = repository.vectors.embedder
                if embedder is None:
                    continue
                model = models.setdefault(
                    id(embedder), Outage(f"embedding model {embedder.model!r} cannot embed"))
                table = Table(database.db_id, name, repository, outage, model)
                table.embedded = EMBEDDED_BY_WORKER.labels(database.db_id, name)
                self.tables.append(table)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="embedding-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("embedding worker: still in a batch after %g s at shutdown; leaving it",
                            timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            worked = False
            for table in self.tables:
                if self._stop.is_set():
                    return
                if not table.waiting(now):
                    worked |= self._drain(table)
            if not worked:
                self._stop.wait(self._idle_s())

    def _idle_s(self) -> float:
        """Until the next look: a poll, or sooner if a retry falls due before it."""
        now = time.monotonic()
        due = [when for table in self.tables for when in table.due() if when > now]
        return min([self.poll_s, *(when - now for when in due)])

    def _drain(self, table: Table) -> bool:
        """Embed ``table``'s queue while it has work; whether anything was embedded."""
        embedded = 0
        try:
            while not self._stop.is_set():
                count = table.repository.embed_backlog(self.batch)
                table.database.answered()
                if count == 0:
                    break
                # Only now was the model surely asked: an empty queue asks it nothing.
                table.model.answered()
                embedded += count
                table.embedded.inc(count)
            if embedded == 0 and table.repository.embedding_backlog():
                # Memories wait, yet none could be embedded: the table holds another model's
                # vectors (or, rarely, every text changed while it was embedded).
                self._other_model(table)
            elif table.other_model:
                log.info("embedding worker: %s/%s takes this model's embeddings again",
                         table.db_id, table.name)
                table.other_model = False
        except EmbeddingUnavailable as error:
            EMBEDDING_FAILURES.labels("model").inc()
            table.model.failed(error, time.monotonic(), self.poll_s, self.max_backoff_s)
        except DatabaseUnavailable as error:
            EMBEDDING_FAILURES.labels("database").inc()
            table.database.failed(error, time.monotonic(), self.poll_s, self.max_backoff_s)
        except Exception:
            # A bug must not end the thread: the queue would never drain again in this process.
            EMBEDDING_FAILURES.labels("error").inc()
            log.exception("embedding worker: embedding %s/%s failed", table.db_id, table.name)
            table.held_until = time.monotonic() + self.max_backoff_s
        return embedded > 0

    def _other_model(self, table: Table) -> None:
        if not table.other_model:
            log.warning("embedding worker: %s/%s holds embeddings of another model than %r: run "
                        "`mnemo reindex` to embed its memories with this one", table.db_id, table.name,
                        table.repository.vectors.embedder.model)
            table.other_model = True
        table.held_until = time.monotonic() + self.max_backoff_s


@contextlib.contextmanager
def running(catalog: Catalog) -> Iterator[EmbeddingWorker | None]:
    """An embedding worker over ``catalog`` while the block runs; none when no table has an
    embedder (MNEMO_EMBEDDINGS=none)."""
    worker = EmbeddingWorker(catalog)
    if not worker.tables:
        yield None
        return
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
