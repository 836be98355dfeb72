"""The rate limit: at most ``MNEMO_RATE_LIMIT`` requests per caller; past it, 429 with
``Retry-After``. ``/health`` and ``/ready`` are never limited.

A caller is whom its credential proves (``auth.Callers``: the security key's holder, a JWT's
user), or its client address when the credential proves nothing. The ``limits`` library counts
them over a sliding window, in this process's memory (so each worker and replica allows the
limit on its own) or, with ``MNEMO_RATE_LIMIT_STORAGE=redis://...``, in Redis, where every
worker and replica counts against one limit. Keys are a digest of the caller, never a token or a
user id.

When Redis cannot be reached, requests are counted in this process's memory for a few seconds
before Redis is tried again: the limit holds per process meanwhile, rather than not at all or by
refusing everyone. The first failure is logged as a warning and each one is counted in
``mnemo_rate_limit_storage_errors_total``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from . import metrics
from .config import DEFAULT_RATE_LIMIT_STORAGE, RateLimit
from .edge import UNLIMITED_PATHS, send_error

log = logging.getLogger("mnemo")

# The longest a Redis that does not answer can hold a request up.
STORAGE_TIMEOUT_S = 0.5
# How long requests are counted in memory after Redis failed, before it is tried again: one
# request in that time pays STORAGE_TIMEOUT_S, not every one.
RETRY_STORAGE_AFTER_S = 5


class RateLimitPerCaller:
    def __init__(self, app: ASGIApp, limit: RateLimit, caller_of: Callable[[str | None], str | None]):
        self.app = app
        self.caller_of = caller_of
        self.item = RateLimitItemPerSecond(limit.count, limit.period_s)
        self.local = SlidingWindowCounterRateLimiter(storage_from_string("async+memory://"))
        self.shared = None
        if limit.storage != DEFAULT_RATE_LIMIT_STORAGE:
            self.shared = SlidingWindowCounterRateLimiter(storage_from_string(
                "async+" + limit.storage, implementation="redispy", key_prefix=limit.prefix,
                wrap_exceptions=True, socket_timeout=STORAGE_TIMEOUT_S,
                socket_connect_timeout=STORAGE_TIMEOUT_S))
        self.shared_failed_at: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in UNLIMITED_PATHS:
            wait = await self.take(self.key_of(scope))
            if wait > 0:
                retry_after = str(max(1, math.ceil(wait)))
                await send_error(scope, send, 429, f"Too many requests; retry in {retry_after} s",
                                 headers=((b"retry-after", retry_after.encode()),))
                return
        await self.app(scope, receive, send)

    def key_of(self, scope: Scope) -> str:
        caller = self.caller_of(Headers(scope=scope).get("authorization"))
        if caller is None:
            client = scope.get("client")
            caller = "address:" + (client[0] if client else "")
        return hashlib.blake2b(caller.encode(), digest_size=16).hexdigest()

    async def take(self, key: str) -> float:
        """Count one request of ``key``'s: 0 if it may go on, else seconds until it may."""
        if self.shared is not None and self.shared_usable():
            try:
                wait = await self.take_from(self.shared, key)
            except StorageError as error:
                self.shared_failed(error)
            else:
                if self.shared_failed_at is not None:
                    log.warning("rate limit storage reached again: requests are counted there again")
                    self.shared_failed_at = None
                return wait
        return await self.take_from(self.local, key)

    async def take_from(self, limiter: SlidingWindowCounterRateLimiter, key: str) -> float:
        if await limiter.hit(self.item, key):
            return 0
        stats = await limiter.get_window_stats(self.item, key)
        return max(1.0, stats.reset_time - time.time())

    def shared_usable(self) -> bool:
        failed_at = self.shared_failed_at
        return failed_at is None or time.monotonic() - failed_at >= RETRY_STORAGE_AFTER_S

    def shared_failed(self, error: StorageError) -> None:
        metrics.RATE_LIMIT_STORAGE_ERRORS.inc()
        if self.shared_failed_at is None:
            # The driver's words, which name the host but not the URL (it may hold a password).
            log.warning("rate limit storage unreachable (%s): requests are counted in this "
                        "process's memory until it answers again", error.storage_error)
        self.shared_failed_at = time.monotonic()
