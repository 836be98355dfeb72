"""Per-user write locks: one user's writes take turns, on PostgreSQL as on SQLite.

SQLite lets one write transaction run at a time (every writer begins IMMEDIATE), so its writes
are serial already. PostgreSQL runs them side by side at READ COMMITTED, where each statement
sees what had committed when it started: an erase that deletes a user's memories, then their
history, then their summary row could delete the summary and history of a create that
committed between those statements, while the create's memory survives. Row locks cannot
prevent that, since a user with no memories yet has no row to lock. So every write
transaction first takes a transaction-scoped advisory lock for each user whose data it
touches: once it holds them, every statement it runs sees all that the user's earlier writers
committed, and no other writer of those users can commit until it does.

Keys are digests of (family, user), so families never share a lock and a collision only
makes two users take turns. Locks are taken in key order, before any row lock, so writers
cannot deadlock. A write to more users than ``MAX_USER_LOCKS`` (a large import batch) takes
the whole family exclusively instead, which per-user writers hold shared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

# Users one transaction locks one by one; past this it locks the family. Each advisory lock
# takes a slot of PostgreSQL's shared lock table, which is sized for tens per transaction.
MAX_USER_LOCKS = 32


def _key(*parts: str, size: int) -> int:
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=size).digest()
    return int.from_bytes(digest, "big", signed=True)


class UserLocks:
    """The advisory locks of one memory table family on one engine (none needed on SQLite)."""

    def __init__(self, family: str, dialect: str):
        self._family = family
        self._enabled = dialect == "postgresql"
        # The family is a single 64-bit key; a user, the pair (family's space, user's key) of
        # 32-bit keys: PostgreSQL keeps the two forms apart, so they never collide.
        self._family_key = _key(family, size=8)
        self._space = _key(family, size=4)
        self._whole_family = sa.text("SELECT pg_advisory_xact_lock(:family)").bindparams(
            family=self._family_key)
        # One round trip; UNION ALL runs its branches in order, and the keys come sorted.
        self._users = sa.text(
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock_shared(:family)"
            " UNION ALL SELECT pg_advisory_xact_lock(:space, key)"
            " FROM unnest(CAST(:keys AS integer[])) AS key) AS locks"
        ).bindparams(family=self._family_key, space=self._space)

    @property
    def enabled(self) -> bool:
        """Whether writers lock at all (not on SQLite, where they never run side by side)."""
        return self._enabled

    def lock(self, conn: sa.Connection, user_ids: Iterable[str | None]) -> None:
        """Hold the write locks of ``user_ids`` (None: a memory of no user) until ``conn``'s
        transaction ends. The first thing a write transaction does, before it writes."""
        if not self._enabled:
            return
        keys = sorted({_key(self._family, user_id, size=4) for user_id in user_ids if user_id is not None})
        if not keys:
            return
        if len(keys) > MAX_USER_LOCKS:
            conn.execute(self._whole_family)
        else:
            conn.execute(self._users, {"keys": keys})

    def lock_family(self, conn: sa.Connection) -> None:
        """Hold the whole family's write lock, which no writer of any user holds meanwhile."""
        if self._enabled:
            conn.execute(self._whole_family)
