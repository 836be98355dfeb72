"""Search by meaning for one memory table family: its memories' embeddings, the queue of those
waiting for one, the model that made them, and the ranked lists that semantic and hybrid
search read.

An embedding is derived data: written by the same transaction as its memory's text when the
model embeds in-process (cheap, so creating a memory makes it findable at once), queued for
the embedding worker otherwise (a remote model that is slow or down never fails a write), and
gone with its memory (ON DELETE CASCADE). The dialects differ only in how a distance and a
word rank are computed, and both are here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .database import WRITES, writer_turn
from .locks import UserLocks
from .model import Memory, utcnow
from .queries import count_of_every_memory
from .schema import MemoryTables, postgresql_words_vector
from .stopwords import STOPWORDS
from .vector_extensions import (
    PGVECTOR_MISSING,
    SQLITE_VEC_MISSING,
    create_pgvector,
    has_sqlite_vec,
    pgvector_missing,
)

log = logging.getLogger(__name__)

# The most memories a ranked search ranks; its pages walk this list.
RANKED_DEPTH = 1000
# Reciprocal rank fusion's constant: a memory ranked r-th by one side adds 1 / (RRF_K + r).
RRF_K = 60
# PostgreSQL's HNSW index proposes at most this many rows per scan unless told otherwise.
HNSW_EF_SEARCH = RANKED_DEPTH
# Words of one letter ("a", "I") match nearly every memory and rank nothing.
WORD = re.compile(r"\w\w+")
# How much a rank by words counts in hybrid search beside the same rank by meaning: questions
# rarely share their answer's words, and the words they do share are often the common ones.
WORDS_WEIGHT = 0.5
# A question word found in more than this share of the family's memories is left out of the
# word rank, whatever the language: fusion counts ranks, not how rare the shared word is, so a
# word that many memories hold would lift whichever of them it matches as high as a rare word
# lifts its one memory. In a family of fewer than COMMON_WORD_FLOOR / COMMON_WORD_SHARE
# memories, no word is common: in a few memories, a word held by two of them still tells them
# from the rest. PERFORMANCE.md ("Recall by meaning") has the figures and how little they move
# with the share.
COMMON_WORD_SHARE = 0.05
COMMON_WORD_FLOOR = 10


class Embedder(Protocol):
    """What storage needs of an embedding model (mnemo.embeddings provides them)."""

    model: str
    dimension: int | None
    # True: in-process and cheap, so writes embed inside their own transaction.
    inline: bool

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text; raises if the model cannot answer."""


class SemanticSearchUnavailable(Exception):
    """Search by meaning cannot run on this family now; ``code`` says why, the message what to do."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class Ranked:
    """One memory of a ranked list, with its score (higher is better)."""

    memory_id: str
    score: float


@dataclass(frozen=True, slots=True)
class Filters:
    user_id: str | None = None
    agent_id: str | None = None
    team_id: str | None = None
    topics: tuple[str, ...] = ()

    def shape(self) -> tuple:
        return (self.user_id is not None, self.agent_id is not None, self.team_id is not None,
                len(self.topics))

    def parameters(self) -> dict:
        values = {name: getattr(self, name) for name in ("user_id", "agent_id", "team_id")
                  if getattr(self, name) is not None}
        values.update((f"topic_{position}", topic) for position, topic in enumerate(self.topics))
        return values


class VectorStore:
    """The embeddings of one family on one engine, made by ``embedder`` (None: embeddings off)."""

    def __init__(self, engine: sa.Engine, tables: MemoryTables, embedder: Embedder | None,
                 locks: UserLocks):
        self._engine = engine
        self._dialect = engine.dialect.name
        self.tables = tables
        self.embedder = embedder
        self._locks = locks
        self._writer = engine.execution_options(**{WRITES: True})
        m, v, q, r = tables.memories, tables.vectors, tables.embedding_queue, tables.embedding_model
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert

        self._read_model = sa.select(r.c.model, r.c.dimension).where(r.c.slot == 1)
        self._record_model = insert(r).values(
            slot=1, model=sa.bindparam("model"), dimension=sa.bindparam("dimension"),
            recorded_at=sa.bindparam("now")).on_conflict_do_nothing()
        self._replace_model = insert(r).values(
            slot=1, model=sa.bindparam("model"), dimension=sa.bindparam("dimension"),
            recorded_at=sa.bindparam("now"))
        self._replace_model = self._replace_model.on_conflict_do_update(
            index_elements=[r.c.slot], set_={"model": self._replace_model.excluded.model,
                                             "dimension": self._replace_model.excluded.dimension,
                                             "recorded_at": self._replace_model.excluded.recorded_at})
        upsert = insert(v).values(memory_id=sa.bindparam("memory_id"), embedding=sa.bindparam("embedding"))
        self._store_vector = upsert.on_conflict_do_update(
            index_elements=[v.c.memory_id], set_={"embedding": upsert.excluded.embedding})
        # A vector made outside the memory's transaction is stored only if the memory still
        # holds the text it was made from.
        current = sa.select(m.c.memory_id, sa.bindparam("embedding", type_=v.c.embedding.type)).where(
            m.c.memory_id == sa.bindparam("memory_id"), m.c.memory == sa.bindparam("text"))
        upsert_current = insert(v).from_select(["memory_id", "embedding"], current)
        self._store_current_vector = upsert_current.on_conflict_do_update(
            index_elements=[v.c.memory_id], set_={"embedding": upsert_current.excluded.embedding})
        self._dequeue_current = sa.delete(q).where(
            q.c.memory_id == sa.bindparam("memory_id"),
            q.c.memory_id.in_(sa.select(m.c.memory_id).where(m.c.memory_id == sa.bindparam("memory_id"),
                                                            m.c.memory == sa.bindparam("text"))))
        self._enqueue = insert(q).values(memory_id=sa.bindparam("memory_id")).on_conflict_do_nothing()
        self._drop_vector = sa.delete(v).where(v.c.memory_id == sa.bindparam("memory_id"))
        self._queued = (sa.select(q.c.memory_id, m.c.memory, m.c.user_id)
                        .select_from(q.join(m, m.c.memory_id == q.c.memory_id))
                        .order_by(q.c.memory_id).limit(sa.bindparam("limit")))
        self._backlog = sa.select(sa.func.count()).select_from(q)
        self._still_queued = self._backlog.where(
            q.c.memory_id.in_(sa.bindparam("memory_ids", expanding=True)))
        self._statements: dict[tuple, sa.TextClause] = {}
        self._count_all = count_of_every_memory(tables)

    # -- writes, inside a writer's transaction -------------------------------------------------

    def stored(self, conn: sa.Connection, memories: Sequence[Memory], text_changed: bool = False) -> None:
        """``memories`` were just inserted (or, ``text_changed``, given new text) in ``conn``'s
        transaction: embed them there if the model embeds in-process, queue them otherwise."""
        if not memories:
            return
        if text_changed:
            conn.execute(self._drop_vector, [{"memory_id": item.memory_id} for item in memories])
        vectors = self._embed_inline(conn, [item.memory for item in memories])
        if vectors is None:
            conn.execute(self._enqueue, [{"memory_id": item.memory_id} for item in memories])
            return
        conn.execute(self._store_vector,
                     [{"memory_id": item.memory_id, "embedding": self._stored_form(vector)}
                      for item, vector in zip(memories, vectors, strict=True)])

    def _embed_inline(self, conn: sa.Connection, texts: list[str]) -> np.ndarray | None:
        embedder = self.embedder
        if embedder is None or not embedder.inline:
            return None
        try:
            vectors = embedder.embed(texts)
        except Exception:  # the memory is stored all the same; the worker embeds it later
            log.exception("embedding %d memories failed: queued for the embedding worker", len(texts))
            return None
        return vectors if self._takes(conn, embedder.model, vectors.shape[1]) else None

    def _takes(self, conn: sa.Connection, model: str, dimension: int) -> bool:
        """Whether this family's vectors are ``model``'s, recording it if none is recorded yet."""
        recorded = conn.execute(self._read_model).first()
        if recorded is None:
            conn.execute(self._record_model, {"model": model, "dimension": dimension, "now": utcnow()})
            recorded = conn.execute(self._read_model).first()
            self._index(conn, recorded.dimension)
        return recorded.model == model and recorded.dimension == dimension

    def _index(self, conn: sa.Connection, dimension: int) -> None:
        """PostgreSQL with pgvector: the HNSW index that serves searches over every user's
        memories (one user's are few: they are ranked exactly, through the user's index)."""
        if self._dialect != "postgresql" or pgvector_missing(conn):
            return
        name = self.tables.name
        conn.execute(sa.text(
            f'CREATE INDEX IF NOT EXISTS "ix_{name}_vectors_{dimension}" ON "{name}_vectors" '
            f"USING hnsw ((embedding::vector({dimension})) vector_cosine_ops)"))

    def _stored_form(self, vector: np.ndarray):
        vector = np.asarray(vector, dtype=np.float32)
        return vector.tolist() if self._dialect == "postgresql" else vector.tobytes()

    def prepare(self, conn: sa.Connection) -> None:
        """At start and on `mnemo migrate`, holding the migration lock: PostgreSQL gets
        pgvector if its server offers it, and the HNSW index of the recorded model's dimension
        (pgvector may have been installed since the model was recorded)."""
        if self._dialect != "postgresql" or not create_pgvector(conn):
            return
        recorded = conn.execute(self._read_model).first()
        if recorded is not None:
            self._index(conn, recorded.dimension)

    # -- the embedding worker and `mnemo reindex` ------------------------------------------------

    def backlog(self) -> int:
        """How many memories wait for an embedding."""
        with self._engine.connect() as conn:
            return conn.execute(self._backlog).scalar_one()

    def embed_queued(self, limit: int = 64) -> int:
        """Embed up to ``limit`` queued memories; how many got their vector. The model's
        errors propagate: the caller decides when to try again."""
        embedder = self.embedder
        if embedder is None:
            return 0
        with self._engine.connect() as conn:
            queued = conn.execute(self._queued, {"limit": limit}).all()
        if not queued:
            return 0
        vectors = embedder.embed([text for _, text, _ in queued])
        rows = [{"memory_id": memory_id, "text": text, "embedding": self._stored_form(vector)}
                for (memory_id, text, _), vector in zip(queued, vectors, strict=True)]
        with writer_turn(self._engine), self._writer.begin() as conn:
            # The owners' write locks, as any writer of their memories takes: once held, the
            # text each vector is checked against is the one the last writer committed, and no
            # writer can change it before this transaction commits.
            self._locks.lock(conn, {user_id for _, _, user_id in queued})
            if not self._takes(conn, embedder.model, vectors.shape[1]):
                return 0
            conn.execute(self._store_current_vector, rows)
            ids = [row["memory_id"] for row in rows]
            conn.execute(self._dequeue_current, [{"memory_id": row["memory_id"], "text": row["text"]}
                                                 for row in rows])
            # A memory whose text changed meanwhile stays queued, to be embedded as it is now.
            left = conn.execute(self._still_queued, {"memory_ids": ids}).scalar_one()
        return len(rows) - left

    def reindex(self, dimension: int, progress: Callable[[int], None] | None = None,
                batch: int = 256) -> int:
        """Make the family's vectors this embedder's: record its model, drop every vector and
        queue every memory, in one transaction that no writer runs beside; then embed the
        queue. Searches by meaning resume as soon as the first transaction commits (memories
        not embedded yet are not found by meaning until they are). How many were embedded."""
        embedder = self.embedder
        if embedder is None:
            raise SemanticSearchUnavailable("EMBEDDINGS_OFF", "embeddings are off (MNEMO_EMBEDDINGS=none)")
        t = self.tables
        with writer_turn(self._engine), self._writer.begin() as conn:
            self._locks.lock_family(conn)
            recorded = conn.execute(self._read_model).first()
            if recorded is None or (recorded.model, recorded.dimension) != (embedder.model, dimension):
                conn.execute(sa.delete(t.vectors))
                conn.execute(self._replace_model, {"model": embedder.model, "dimension": dimension,
                                                   "now": utcnow()})
                self._index(conn, dimension)
            conn.execute(sa.insert(t.embedding_queue).from_select(
                ["memory_id"], sa.select(t.memories.c.memory_id).where(
                    ~sa.exists().where(t.vectors.c.memory_id == t.memories.c.memory_id),
                    ~sa.exists().where(t.embedding_queue.c.memory_id == t.memories.c.memory_id))))
        done = 0
        while True:
            embedded = self.embed_queued(batch)
            if embedded == 0:
                return done
            done += embedded
            if progress is not None:
                progress(embedded)

    # -- reads -----------------------------------------------------------------------------------

    def unavailable(self, conn: sa.Connection) -> SemanticSearchUnavailable | None:
        """Why search by meaning cannot run here now, or None if it can."""
        embedder = self.embedder
        if embedder is None:
            return SemanticSearchUnavailable(
                "EMBEDDINGS_OFF", "search by meaning is off on this server (MNEMO_EMBEDDINGS=none); "
                "use search_mode=substring")
        if self._dialect == "sqlite" and not has_sqlite_vec(conn):
            return SemanticSearchUnavailable("VECTOR_EXTENSION_MISSING", SQLITE_VEC_MISSING)
        if self._dialect == "postgresql" and pgvector_missing(conn):
            return SemanticSearchUnavailable("VECTOR_EXTENSION_MISSING", PGVECTOR_MISSING)
        recorded = conn.execute(self._read_model).first()
        if recorded is not None and recorded.model != embedder.model:
            return SemanticSearchUnavailable(
                "EMBEDDING_MODEL_CHANGED",
                f"table {self.tables.name!r} holds embeddings of model {recorded.model!r}, but this "
                f"server embeds with {embedder.model!r}: run `mnemo reindex` (with this server's "
                "settings) to re-embed its memories")
        return None

    def nearest(self, conn: sa.Connection, question: np.ndarray, filters: Filters) -> list[Ranked]:
        """The memories that match ``filters``, nearest in meaning to ``question`` first
        (at most RANKED_DEPTH); score: cosine similarity."""
        recorded = conn.execute(self._read_model).first()
        if recorded is None or recorded.dimension != question.shape[0]:
            return []  # nothing embedded yet
        parameters = {**filters.parameters(), "depth": RANKED_DEPTH}
        if self._dialect == "postgresql":
            conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}"))
            conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            parameters["question"] = "[" + ",".join(repr(float(x)) for x in question) + "]"
        else:
            parameters["question"] = np.asarray(question, dtype=np.float32).tobytes()
        statement = self._statement("nearest", filters.shape(), recorded.dimension)
        rows = conn.execute(statement, parameters).all()
        # Ties (and HNSW's relaxed order) settled the same way every time, so pages never overlap.
        rows.sort(key=lambda row: (row[1], row[0]))
        return [Ranked(memory_id, round(1.0 - float(distance), 6)) for memory_id, distance in rows]

    def by_words(self, conn: sa.Connection, question: str, filters: Filters) -> list[Ranked]:
        """The memories that match ``filters`` and share a word with ``question``, best
        BM25-style rank first (at most RANKED_DEPTH). The question's function words and the
        family's common words do not count: they match memories without telling them apart."""
        words = [word for word in dict.fromkeys(WORD.findall(question.casefold())) if word not in STOPWORDS]
        words = self._uncommon(conn, words)
        if not words:
            return []
        either = " | " if self._dialect == "postgresql" else " OR "
        parameters = {**filters.parameters(), "depth": RANKED_DEPTH,
                      "words": either.join(map(self._term, words))}
        rows = conn.execute(self._statement("by_words", filters.shape(), None), parameters).all()
        # SQLite's bm25 is lower for better matches; PostgreSQL's ts_rank_cd, higher.
        sign = -1.0 if self._dialect == "sqlite" else 1.0
        ranked = sorted(((sign * float(rank), memory_id) for memory_id, rank in rows),
                        key=lambda pair: (-pair[0], pair[1]))
        return [Ranked(memory_id, score) for score, memory_id in ranked]

    def _term(self, word: str) -> str:
        """``word`` as the word index's query language quotes it (a word holds no quote)."""
        return f"'{word}'" if self._dialect == "postgresql" else f'"{word}"'

    def _uncommon(self, conn: sa.Connection, words: list[str]) -> list[str]:
        """``words`` less those held by more than COMMON_WORD_SHARE of the family's memories.
        Each word's memories are counted only up to that bound, through the word index, so a
        common word costs at most as many index entries as the bound."""
        if not words:
            return words
        bound = max(COMMON_WORD_FLOOR, int(COMMON_WORD_SHARE * self._family_size(conn)))
        statement = self._statement("word_count", Filters().shape(), None)
        return [word for word in words if conn.execute(
            statement, {"word": self._term(word), "bound": bound + 1}).scalar_one() <= bound]

    def _family_size(self, conn: sa.Connection) -> int:
        return conn.execute(self._count_all).scalar_one()

    def _statement(self, kind: str, shape: tuple, dimension: int | None) -> sa.TextClause:
        key = (kind, shape, dimension)
        statement = self._statements.get(key)
        if statement is None:
            statement = self._build(kind, shape, dimension)
            self._statements[key] = statement
        return statement

    def _build(self, kind: str, shape: tuple, dimension: int | None) -> sa.TextClause:
        name = self.tables.name
        quote = self._engine.dialect.identifier_preparer.quote
        memories, vectors, topics = quote(name), quote(f"{name}_vectors"), quote(f"{name}_topics")
        has_user, has_agent, has_team, topic_count = shape
        conditions = [f"m.{column} = :{column}" for column, present in
                      (("user_id", has_user), ("agent_id", has_agent), ("team_id", has_team)) if present]
        conditions += [f"EXISTS (SELECT 1 FROM {topics} t WHERE t.memory_id = m.memory_id "
                       f"AND t.topic = :topic_{position})" for position in range(topic_count)]
        if kind == "word_count":
            if self._dialect == "postgresql":
                search = quote(f"{name}_search")
                matches = (f"SELECT 1 FROM {search} s WHERE {postgresql_words_vector('s.memory_folded')} "
                           f"@@ to_tsquery('simple'::regconfig, :word)")
            else:
                words_table = quote(f"{name}_words")
                matches = f"SELECT 1 FROM {words_table} WHERE {words_table} MATCH :word"
            return sa.text(f"SELECT count(*) FROM ({matches} LIMIT :bound) AS matches")
        if kind == "nearest":
            if self._dialect == "postgresql":
                distance = (f"(v.embedding::vector({dimension})) <=> "
                            f"CAST(:question AS vector({dimension}))")
            else:
                distance = "vec_distance_cosine(v.embedding, :question)"
            if not conditions:
                # Every vector is of a stored memory (its foreign key): with no filter, the
                # memories need not be read at all, which SQLite's plan otherwise does first.
                return sa.text(f"SELECT v.memory_id, {distance} AS distance FROM {vectors} v "
                               f"ORDER BY distance LIMIT :depth")
            return sa.text(f"SELECT m.memory_id, {distance} AS distance FROM {vectors} v "
                           f"JOIN {memories} m ON m.memory_id = v.memory_id WHERE {' AND '.join(conditions)} "
                           f"ORDER BY distance LIMIT :depth")
        if self._dialect == "postgresql":
            search = quote(f"{name}_search")
            words = postgresql_words_vector("s.memory_folded")
            query = "to_tsquery('simple'::regconfig, :words)"
            where = " AND ".join([f"{words} @@ {query}", *conditions])
            return sa.text(f"SELECT m.memory_id, ts_rank_cd({words}, {query}) AS rank FROM {search} s "
                           f"JOIN {memories} m ON m.id = s.id WHERE {where} "
                           f"ORDER BY rank DESC LIMIT :depth")
        words_table = quote(f"{name}_words")
        where = " AND ".join([f"{words_table} MATCH :words", *conditions])
        return sa.text(f"SELECT m.memory_id, bm25({words_table}) AS rank FROM {words_table} "
                       f"JOIN {memories} m ON m.id = {words_table}.rowid WHERE {where} "
                       f"ORDER BY rank LIMIT :depth")


def fused(by_meaning: list[Ranked], by_words: list[Ranked]) -> list[Ranked]:
    """Weighted reciprocal rank fusion of the two lists, at most RANKED_DEPTH long. The score
    is scaled so that 1 means first in both."""
    scores: dict[str, float] = {}
    for ranked, weight in ((by_meaning, 1.0), (by_words, WORDS_WEIGHT)):
        for rank, item in enumerate(ranked, start=1):
            scores[item.memory_id] = scores.get(item.memory_id, 0.0) + weight / (RRF_K + rank)
    best = (1.0 + WORDS_WEIGHT) / (RRF_K + 1)
    ordered = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:RANKED_DEPTH]
    return [Ranked(memory_id, round(score / best, 6)) for memory_id, score in ordered]
