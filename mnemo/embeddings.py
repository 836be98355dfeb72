"""Embedding providers: the vectors that search by meaning compares.

Every provider gives float32 rows of unit length, so that a cosine is a dot product, and fails
only with EmbeddingUnavailable, so that storage can tell "the model cannot answer now" (queue
the memory, embed it later) from a bug. One embedder serves a whole process and every thread in
it.

- ``wordllama``: WordLlama's static token embeddings (``l2_supercat``, 256 dimensions), which
  the wordllama package ships. A lookup and an average, in process: cheap enough to run inside
  the write transaction (``inline``), and it never reaches a network.
- ``openai``: any server that speaks the OpenAI embeddings API (OpenAI, Ollama, vLLM,
  LiteLLM...). A round trip per batch, so storage embeds outside the write, from a queue.

Blank text (empty, or only whitespace) has no meaning to embed: WordLlama averages no tokens
into a vector of NaN, and OpenAI refuses an empty input. It gets BLANK instead, the same unit
vector from every provider of a given dimension, so that blank is equal to blank and, being a
fixed pseudo-random direction, about as far from every real text as unrelated texts are from
each other.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from .upstream import upstream_message

log = logging.getLogger("mnemo")

WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIMENSION = 256
# The most texts one request to an embeddings API carries: OpenAI takes up to 2048, but self-
# hosted servers refuse far fewer (Hugging Face's text-embeddings-inference, 32 by default).
DEFAULT_BATCH_SIZE = 64
# Seeds BLANK's direction; changing it moves every stored blank vector away from new ones.
BLANK_SEED = b"mnemo: blank text"


class EmbeddingUnavailable(Exception):
    """The provider gave no usable vectors: unreachable, too slow, refusing, or answering
    something that is not what was asked for. The message says which, for the log."""


def blank_vector(dimension: int) -> np.ndarray:
    """The unit vector every blank text gets: each component +-1/sqrt(dimension), the signs
    from a hash of BLANK_SEED. A random sign vector is nearly orthogonal to any fixed one in
    hundreds of dimensions, and being derived from a hash it never changes with a library."""
    bits = np.unpackbits(np.frombuffer(hashlib.shake_256(BLANK_SEED).digest((dimension + 7) // 8),
                                       dtype=np.uint8))[:dimension]
    signs = np.where(bits == 1, 1.0, -1.0).astype(np.float32)
    return signs / np.float32(np.sqrt(dimension))


def is_blank(text: str) -> bool:
    return not text.strip()


def _texts(texts: Sequence[str]) -> list[str]:
    # A str is a Sequence[str] of its characters, which is never what a caller means.
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one text")
    return list(texts)


def _unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` as float32 rows scaled to unit length, and which rows could not be (zero or
    not finite: they are left as they were)."""
    # A number beyond float32's range becomes infinite, and its row unusable, without a warning.
    with np.errstate(over="ignore", invalid="ignore"):
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1)
    unusable = ~np.isfinite(norms) | (norms == 0)
    scale = np.where(unusable, 1.0, norms).astype(np.float32)
    return vectors / scale[:, np.newaxis], unusable


# WordLlama's model, loaded by the first embed of the process and shared by every embedder.
_wordllama_model = None
_wordllama_lock = threading.Lock()


def _load_wordllama():
    """WordLlama's l2_supercat model from the files the wordllama package ships, never a download.

    wordllama 0.4 looks for its bundled tokenizer under ``tokenizer/`` beside its code, where
    it is ``tokenizers/``, then in the cache directory, then on Hugging Face: naming the package
    directory as the cache finds both files there, and disable_download makes a missing file an
    error instead of a request."""
    global _wordllama_model
    with _wordllama_lock:
        if _wordllama_model is not None:
            return _wordllama_model
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            import wordllama
        finally:
            # wordllama.inference calls logging.basicConfig() on import: the process's logging is
            # Mnemo's to configure (mnemo.logs), not a library's.
            for handler in [h for h in root.handlers if h not in handlers]:
                root.removeHandler(handler)
            root.setLevel(level)
        model = wordllama.WordLlama.load(config=WORDLLAMA_CONFIG, dim=WORDLLAMA_DIMENSION,
                                         cache_dir=Path(wordllama.__file__).parent,
                                         disable_download=True)
        if model.embedding.shape[1] != WORDLLAMA_DIMENSION:
            raise ValueError(f"wordllama loaded {model.embedding.shape[1]} dimensions, "
                             f"not {WORDLLAMA_DIMENSION}")
        _wordllama_model = model
        return model


class WordLlamaEmbedder:
    """WordLlama's bundled model, in process. Loaded once per process, on the first embed."""

    model = f"wordllama/{WORDLLAMA_CONFIG}/{WORDLLAMA_DIMENSION}"
    dimension = WORDLLAMA_DIMENSION
    inline = True

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _texts(texts)
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        wanted = [index for index, text in enumerate(texts) if not is_blank(text)]
        result[:] = blank_vector(self.dimension)
        if not wanted:
            return result
        try:
            model = _load_wordllama()
            # norm=False: normalising here keeps a text whose tokens average to zero from
            # becoming NaN (it gets BLANK like a blank text, having no direction either).
            vectors = model.embed([texts[index] for index in wanted], norm=False)
        except Exception as error:
            # Whatever fails inside the library (missing files, a broken install) is the
            # provider's failure as storage sees it.
            raise EmbeddingUnavailable(f"wordllama cannot embed: {type(error).__name__}: {error}") from error
        rows, unusable = _unit_rows(vectors)
        rows[unusable] = blank_vector(self.dimension)
        result[wanted] = rows
        return result


class OpenAIEmbedder:
    """A server speaking the OpenAI embeddings API: ``POST {base_url}/embeddings``.

    ``model`` is ``openai/<model id>``, without the server: one model id names one set of
    vectors wherever it is served (OpenAI itself, a LiteLLM proxy in front of it, an Ollama
    moved to another host), and a changed URL must not make every stored vector stale. Two
    servers giving different vectors under one id would be a deployment error the name cannot
    catch; a different dimension, at least, is refused.
    """

    inline = False

    def __init__(self, base_url: str, model_id: str, api_key: str | None = None,
                 timeout_s: float = 10.0, batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_id = model_id
        self.model = f"openai/{model_id}"
        self.endpoint = base_url.rstrip("/") + "/embeddings"
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.dimension: int | None = None
        self._dimension_lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One client, so that the worker's requests reuse connections; httpx's client may be
        # shared by threads.
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _texts(texts)
        wanted = [index for index, text in enumerate(texts) if not is_blank(text)]
        rows = [self._batch([texts[index] for index in wanted[start:start + self.batch_size]])
                for start in range(0, len(wanted), self.batch_size)]
        dimension = self.dimension
        if dimension is None:
            if texts:
                # Only blank texts, and no answer yet to say how long BLANK must be.
                dimension = self._batch(["dimension"]).shape[1]
            else:
                return np.empty((0, 0), dtype=np.float32)
        result = np.empty((len(texts), dimension), dtype=np.float32)
        result[:] = blank_vector(dimension)
        if wanted:
            result[wanted] = np.concatenate(rows)
        return result

    def _batch(self, texts: list[str]) -> np.ndarray:
        """One request: the vectors of ``texts``, in their order, of unit length."""
        try:
            response = self._client.post(self.endpoint, json={"model": self.model_id, "input": texts})
        except httpx.TimeoutException:
            raise EmbeddingUnavailable(f"the embeddings server did not answer within "
                                       f"{self.timeout_s:g} seconds") from None
        except httpx.HTTPError as error:
            raise EmbeddingUnavailable(f"the embeddings server could not be reached: {error}") from None
        if response.status_code >= 400:
            raise EmbeddingUnavailable(f"the embeddings server answered HTTP {response.status_code}"
                                       + upstream_message(response))
        vectors = self._vectors(response, len(texts))
        rows, unusable = _unit_rows(vectors)
        if unusable.any():
            raise EmbeddingUnavailable("the embeddings server answered a vector of zero length "
                                       "or with non-finite numbers")
        with self._dimension_lock:
            if self.dimension is None:
                self.dimension = rows.shape[1]
            elif rows.shape[1] != self.dimension:
                raise EmbeddingUnavailable(f"the embeddings server answered {rows.shape[1]} "
                                           f"dimensions where it had answered {self.dimension}")
        return rows

    def _vectors(self, response: httpx.Response, count: int) -> np.ndarray:
        """The answer's ``data``, sorted by ``index``: exactly one vector per text asked for."""
        try:
            data = response.json()["data"]
        except (ValueError, LookupError, TypeError):
            raise EmbeddingUnavailable("the embeddings server's answer is not an embeddings list") from None
        if not isinstance(data, list) or not all(
                isinstance(item, dict) and type(item.get("index")) is int for item in data):
            raise EmbeddingUnavailable("the embeddings server's answer is not an embeddings list")
        if len(data) != count:
            raise EmbeddingUnavailable(f"the embeddings server answered {len(data)} vectors "
                                       f"for {count} texts")
        data = sorted(data, key=lambda item: item["index"])
        if [item["index"] for item in data] != list(range(count)):
            raise EmbeddingUnavailable("the embeddings server's answer does not index each text once")
        try:
            vectors = [np.asarray(item["embedding"]) for item in data]
        except (KeyError, ValueError):
            vectors = []
        if len(vectors) != count or not all(
                vector.ndim == 1 and vector.size > 0 and vector.dtype.kind in "fiu" for vector in vectors):
            raise EmbeddingUnavailable("the embeddings server answered vectors that are not "
                                       "lists of numbers")
        if len({vector.size for vector in vectors}) != 1:
            raise EmbeddingUnavailable("the embeddings server answered vectors of different lengths")
        return np.stack(vectors)
