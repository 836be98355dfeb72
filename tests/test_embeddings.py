"""Embedding providers (mnemo.embeddings) and their settings: unit float32 rows, one per text,
or EmbeddingUnavailable; WordLlama in process and offline; an OpenAI-compatible server played by
a fake on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mnemo.config import (
    DEFAULT_EMBEDDINGS,
    DEFAULT_EMBEDDINGS_BATCH_SIZE,
    DEFAULT_EMBEDDINGS_TIMEOUT_S,
    ConfigError,
    EmbeddingsConfig,
    Settings,
)
from mnemo.embeddings import (
    EmbeddingUnavailable,
    OpenAIEmbedder,
    WordLlamaEmbedder,
    blank_vector,
)

from .fake_openai import EmbeddingReply, FakeOpenAI, fake_vector

TEA = "The user loves drinking green tea in the morning."
TEA_AGAIN = "User enjoys a cup of green tea every morning."
TYRES = "The car needs new tyres before winter."
NAME = "Prefers to be called Sam."


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def assert_unit_rows(vectors: np.ndarray, count: int, dimension: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (count, dimension)
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# -- WordLlama -------------------------------------------------------------------------------

# Run in a fresh interpreter, so that the model is loaded there and then, with every way out to
# a network replaced by one that records the attempt and fails, and with an empty home, so that
# no cache a download left could stand in for the package's own files.
OFFLINE_LOAD = """
import json, logging, socket, sys
attempts = []
def refuse(name):
    def refused(*args, **kwargs):
        attempts.append(name)
        raise OSError("no network in this test")
    return refused
socket.create_connection = refuse("create_connection")
socket.getaddrinfo = refuse("getaddrinfo")
socket.socket.connect = refuse("connect")
socket.socket.connect_ex = refuse("connect_ex")
from mnemo import embeddings
vectors = embeddings.WordLlamaEmbedder().embed(["green tea", "tyres"])
print(json.dumps({
    "attempts": attempts,
    "shape": list(vectors.shape),
    "vocabulary": embeddings._wordllama_model.embedding.shape[0],
    "root_handlers": len(logging.getLogger().handlers),
    "root_level": logging.getLogger().level,
}))
"""


@pytest.fixture(scope="module")
def offline_load(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    result = subprocess.run([sys.executable, "-c", OFFLINE_LOAD], capture_output=True, text=True,
                            timeout=120, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_wordllama_loads_from_the_installed_package_without_touching_the_network(offline_load):
    assert offline_load["attempts"] == []
    assert offline_load["shape"] == [2, 256]
    # l2_supercat's vocabulary: the bundled model, not some other one found elsewhere.
    assert offline_load["vocabulary"] == 32000


def test_loading_wordllama_leaves_the_process_logging_alone(offline_load):
    # wordllama calls logging.basicConfig() on import; Mnemo configures logging itself.
    assert offline_load["root_handlers"] == 0
    assert offline_load["root_level"] == 30


@pytest.fixture(scope="module")
def wordllama():
    return WordLlamaEmbedder()


def test_wordllama_names_its_model_and_dimension_up_front_and_embeds_inline(wordllama):
    assert wordllama.model == "wordllama/l2_supercat/256"
    assert wordllama.dimension == 256
    assert wordllama.inline is True


def test_wordllama_gives_one_float32_unit_row_per_text_in_order(wordllama):
    texts = [TEA, TYRES, NAME, "x" * 5000]
    vectors = wordllama.embed(texts)
    assert_unit_rows(vectors, 4, 256)
    for text, vector in zip(texts, vectors, strict=True):
        assert np.allclose(wordllama.embed([text])[0], vector, atol=1e-6)


def test_wordllama_is_deterministic_within_and_across_calls(wordllama):
    first = wordllama.embed([TEA, TEA, TYRES])
    assert np.array_equal(first[0], first[1])
    assert np.array_equal(wordllama.embed([TEA, TEA, TYRES]), first)


def test_similar_texts_are_closer_than_unrelated_ones(wordllama):
    tea, tea_again, tyres, name = wordllama.embed([TEA, TEA_AGAIN, TYRES, NAME])
    assert tea @ tea_again > 0.5
    assert tea @ tea_again > tea @ tyres + 0.3
    assert tea @ tea_again > tea @ name + 0.3


@pytest.mark.parametrize("blank", ["", " ", "\n\t  \r\n"])
def test_blank_text_gets_the_fixed_blank_unit_vector_not_nan(wordllama, blank):
    vectors = wordllama.embed([blank, TEA])
    assert_unit_rows(vectors, 2, 256)
    assert np.array_equal(vectors[0], blank_vector(256))
    # Far from real text, as unrelated texts are from each other, and a cosine distance to it is
    # a number.
    assert abs(float(vectors[0] @ vectors[1])) < 0.3


def test_only_blank_texts_need_no_model(wordllama):
    assert np.array_equal(wordllama.embed(["", "  "]), np.stack([blank_vector(256)] * 2))
    assert wordllama.embed([]).shape == (0, 256)


def test_the_blank_vector_is_unit_length_and_the_same_in_every_process_and_version():
    for dimension in (1, 8, 256, 1536, 3072):
        vector = blank_vector(dimension)
        assert vector.dtype == np.float32 and vector.shape == (dimension,)
        assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    # Stored blank vectors must keep matching new ones: the direction is pinned, not drawn from a
    # generator whose output a library upgrade may change.
    assert (np.sign(blank_vector(8)) == [1, -1, -1, -1, 1, 1, 1, -1]).all()
    assert (np.sign(blank_vector(256)[:8]) == np.sign(blank_vector(8))).all()


def test_one_wordllama_embedder_serves_many_threads_at_once(wordllama):
    texts = [f"{TEA} {n}" for n in range(40)]
    expected = wordllama.embed(texts)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def embed(worker: int) -> None:
        try:
            results[worker] = np.concatenate([wordllama.embed([text]) for text in texts])
        except BaseException as error:  # noqa: BLE001 -- reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=embed, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == 8
    for vectors in results.values():
        assert np.allclose(vectors, expected, atol=1e-6)


def test_a_wordllama_that_cannot_load_raises_embedding_unavailable(monkeypatch):
    import wordllama as package

    from mnemo import embeddings

    def missing(*_args, **_kwargs):
        raise FileNotFoundError("Weights file 'l2_supercat_256.safetensors' not found")

    monkeypatch.setattr(embeddings, "_wordllama_model", None)
    monkeypatch.setattr(package.WordLlama, "load", missing)
    with pytest.raises(EmbeddingUnavailable, match="wordllama cannot embed: FileNotFoundError"):
        WordLlamaEmbedder().embed([TEA])


def test_embed_takes_a_sequence_of_texts_not_one_text(wordllama):
    with pytest.raises(TypeError, match="not one text"):
        wordllama.embed(TEA)
    assert wordllama.embed((TEA, TYRES)).shape == (2, 256)


# -- An OpenAI-compatible server ---------------------------------------------------------------



def embedder(fake: FakeOpenAI, **options) -> OpenAIEmbedder:
    return OpenAIEmbedder(fake.base_url, "fake-embed", **options)


def embedding_requests(fake: FakeOpenAI) -> list[dict]:
    return [request for request in fake.requests if request["path"] == "/v1/embeddings"]


def test_the_server_is_asked_for_the_model_and_its_vectors_come_back_unit_length(fake):
    client = embedder(fake)
    vectors = client.embed([TEA, TYRES])
    assert_unit_rows(vectors, 2, 8)
    assert np.allclose(vectors, [unit(fake_vector(TEA, 8)), unit(fake_vector(TYRES, 8))], atol=1e-6)
    [request] = embedding_requests(fake)
    assert request["json"] == {"model": "fake-embed", "input": [TEA, TYRES]}


def test_the_model_is_named_by_its_id_not_its_server_and_is_embedded_by_a_worker(fake):
    client = embedder(fake)
    assert client.model == "openai/fake-embed"
    assert OpenAIEmbedder("http://elsewhere:11434/v1/", "fake-embed").model == client.model
    assert client.inline is False


def test_the_dimension_is_learned_from_the_first_answer(fake):
    fake.embedding_reply = EmbeddingReply(dimension=12)
    client = embedder(fake)
    assert client.dimension is None
    client.embed([TEA])
    assert client.dimension == 12


def test_vectors_are_matched_to_texts_by_index_not_by_position(fake):
    fake.embedding_reply = EmbeddingReply(reverse=True)
    texts = [TEA, TYRES, NAME]
    vectors = embedder(fake).embed(texts)
    assert np.allclose(vectors, [unit(fake_vector(text, 8)) for text in texts], atol=1e-6)


def test_the_api_key_is_sent_as_a_bearer_token_and_none_without_one(fake):
    embedder(fake, api_key="sk-test").embed([TEA])
    embedder(fake).embed([TEA])
    with_key, without = embedding_requests(fake)
    assert with_key["headers"]["Authorization"] == "Bearer sk-test"
    assert "Authorization" not in without["headers"]


def test_many_texts_are_split_into_batches_of_at_most_the_batch_size(fake):
    texts = [f"memory {n}" for n in range(150)]
    vectors = embedder(fake, batch_size=64).embed(texts)
    assert [len(request["json"]["input"]) for request in embedding_requests(fake)] == [64, 64, 22]
    assert np.allclose(vectors, [unit(fake_vector(text, 8)) for text in texts], atol=1e-6)


def test_blank_texts_are_never_sent_and_get_the_blank_vector(fake):
    client = embedder(fake)
    vectors = client.embed(["", TEA, "   "])
    assert [request["json"]["input"] for request in embedding_requests(fake)] == [[TEA]]
    assert np.array_equal(vectors[0], blank_vector(8)) and np.array_equal(vectors[2], blank_vector(8))
    assert np.allclose(vectors[1], unit(fake_vector(TEA, 8)), atol=1e-6)


def test_only_blank_texts_ask_the_server_once_for_its_dimension(fake):
    client = embedder(fake)
    assert np.array_equal(client.embed([" "]), blank_vector(8)[np.newaxis])
    assert np.array_equal(client.embed(["", ""]), np.stack([blank_vector(8)] * 2))
    assert len(embedding_requests(fake)) == 1
    assert client.embed([]).shape == (0, 8)
    assert len(embedding_requests(fake)) == 1


def answer(*embeddings, indexes: list[int] | None = None) -> EmbeddingReply:
    """A reply of exactly these embeddings, numbered 0, 1... or by ``indexes``."""
    indexes = list(range(len(embeddings))) if indexes is None else indexes
    return EmbeddingReply(raw=json.dumps({"data": [
        {"index": index, "embedding": embedding} for index, embedding in zip(indexes, embeddings, strict=True)
    ]}).encode())


@pytest.mark.parametrize(("reply", "complaint"), [
    (EmbeddingReply(status=500), "answered HTTP 500: The model `nope` does not exist"),
    (EmbeddingReply(status=401, raw=b"denied"), "answered HTTP 401$"),
    (EmbeddingReply(raw=b"<html>gateway</html>"), "not an embeddings list"),
    (EmbeddingReply(raw=b'{"data": {"index": 0}}'), "not an embeddings list"),
    (EmbeddingReply(raw=b'{"data": [{"embedding": [1, 2]}]}'), "not an embeddings list"),
    (EmbeddingReply(extra_vectors=-1), "answered 1 vectors for 2 texts"),
    (EmbeddingReply(extra_vectors=1), "answered 3 vectors for 2 texts"),
    (EmbeddingReply(ragged=True), "vectors of different lengths"),
    (answer([1, 2], [1, 2], indexes=[0, 0]), "does not index each text once"),
    (answer([1, 2], [1, 2], indexes=[1, 2]), "does not index each text once"),
    # What a server answers for encoding_format=base64, never asked for.
    (answer("AACAPw==", "AACAPw=="), "not lists of numbers"),
    (answer([1, "2"], [1, 2]), "not lists of numbers"),
    (answer([[1, 2]], [[1, 2]]), "not lists of numbers"),
    (answer([True, False], [1, 2]), "not lists of numbers"),
    (answer([], []), "not lists of numbers"),
    (answer([0, 0], [1, 2]), "zero length or with non-finite numbers"),
    (answer([float("nan"), 1], [1, 2]), "zero length or with non-finite numbers"),
    (answer([1e39, 1], [1, 2]), "zero length or with non-finite numbers"),
])
def test_a_failing_or_malformed_answer_raises_embedding_unavailable(fake, reply, complaint):
    fake.embedding_reply = reply
    client = embedder(fake)
    with pytest.raises(EmbeddingUnavailable, match=complaint):
        client.embed([TEA, TYRES])
    assert client.dimension is None


def test_a_change_of_dimension_between_answers_raises_embedding_unavailable(fake):
    client = embedder(fake)
    client.embed([TEA])
    fake.embedding_reply = EmbeddingReply(dimension=16)
    with pytest.raises(EmbeddingUnavailable, match="answered 16 dimensions where it had answered 8"):
        client.embed([TYRES])
    assert client.dimension == 8


def test_a_slow_server_raises_embedding_unavailable_after_the_timeout(fake):
    fake.embedding_reply = EmbeddingReply(delay_s=1.5)
    client = embedder(fake, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(EmbeddingUnavailable, match="did not answer within 0.3 seconds"):
        client.embed([TEA])
    assert time.monotonic() - started < 1.2


def test_an_unreachable_server_raises_embedding_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", "fake-embed", timeout_s=2)
    with pytest.raises(EmbeddingUnavailable, match="could not be reached"):
        client.embed([TEA])


# -- Settings ----------------------------------------------------------------------------------

def test_wordllama_is_the_default_and_one_embedder_serves_the_process():
    settings = Settings.from_env({})
    assert settings.embeddings == EmbeddingsConfig(provider="wordllama")
    assert isinstance(settings.embedder, WordLlamaEmbedder)
    assert settings.embedder is settings.embedder is Settings().embedder
    assert Settings.from_env({"MNEMO_EMBEDDINGS": " WordLlama "}).embedder is settings.embedder


def test_none_turns_search_by_meaning_off():
    assert Settings.from_env({"MNEMO_EMBEDDINGS": "none"}).embedder is None


def test_openai_embeddings_read_their_settings_from_the_environment(fake):
    settings = Settings.from_env({
        "MNEMO_EMBEDDINGS": "openai", "MNEMO_EMBEDDINGS_MODEL": "openai:fake-embed",
        "MNEMO_EMBEDDINGS_BASE_URL": fake.base_url, "MNEMO_EMBEDDINGS_API_KEY": "sk-embed",
        "MNEMO_EMBEDDINGS_TIMEOUT": "2.5", "MNEMO_EMBEDDINGS_BATCH_SIZE": "2",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_API_KEY": "sk-chat",
    })
    assert settings.embeddings == EmbeddingsConfig("openai", "fake-embed", fake.base_url, "sk-embed", 2.5, 2)
    assert "sk-embed" not in repr(settings)
    client = settings.embedder
    assert isinstance(client, OpenAIEmbedder) and client is settings.embedder
    assert client.model == "openai/fake-embed"
    client.embed([TEA, TYRES, NAME])
    requests = embedding_requests(fake)
    assert [len(request["json"]["input"]) for request in requests] == [2, 1]
    assert requests[0]["headers"]["Authorization"] == "Bearer sk-embed"


def test_openai_embeddings_fall_back_to_the_openai_variables_as_optimize_does():
    embeddings = Settings.from_env({
        "MNEMO_EMBEDDINGS": "openai", "MNEMO_EMBEDDINGS_MODEL": "nomic-embed-text:latest",
        "OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_API_KEY": "sk-shared",
    }).embeddings
    assert embeddings == EmbeddingsConfig("openai", "nomic-embed-text:latest", "http://localhost:11434/v1",
                                          "sk-shared", DEFAULT_EMBEDDINGS_TIMEOUT_S,
                                          DEFAULT_EMBEDDINGS_BATCH_SIZE)


OPENAI = {"MNEMO_EMBEDDINGS": "openai", "MNEMO_EMBEDDINGS_MODEL": "text-embedding-3-small",
          "MNEMO_EMBEDDINGS_BASE_URL": "https://api.openai.com/v1"}


@pytest.mark.parametrize(("env", "complaint"), [
    ({"MNEMO_EMBEDDINGS": "sentence-transformers"},
     "MNEMO_EMBEDDINGS must be wordllama, openai or none, not 'sentence-transformers'"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_MODEL": ""}, "MNEMO_EMBEDDINGS=openai needs MNEMO_EMBEDDINGS_MODEL"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_MODEL": "openai:"}, "MNEMO_EMBEDDINGS=openai needs MNEMO_EMBEDDINGS_MODEL"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_BASE_URL": ""},
     r"needs MNEMO_EMBEDDINGS_BASE_URL \(or OPENAI_BASE_URL\)"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_BASE_URL": "localhost:11434/v1"}, "must be an http:// or https:// URL"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_BASE_URL": "ftp://models/v1"}, "must be an http:// or https:// URL"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_BASE_URL": "http:///v1"}, "must be an http:// or https:// URL"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_BASE_URL": "http://host:port/v1"}, "must be an http:// or https:// URL"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_TIMEOUT": "soon"}, "MNEMO_EMBEDDINGS_TIMEOUT must be a number of seconds"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_TIMEOUT": "0"},
     "MNEMO_EMBEDDINGS_TIMEOUT must be a number of seconds above 0"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_BATCH_SIZE": "0"}, "MNEMO_EMBEDDINGS_BATCH_SIZE must be at least 1"),
    ({**OPENAI, "MNEMO_EMBEDDINGS_BATCH_SIZE": "many"}, "MNEMO_EMBEDDINGS_BATCH_SIZE must be a whole number"),
    ({"MNEMO_EMBEDDINGS_MODEL": "text-embedding-3-small"},
     "MNEMO_EMBEDDINGS_MODEL is set but MNEMO_EMBEDDINGS is not openai"),
    ({"MNEMO_EMBEDDINGS": "none", "MNEMO_EMBEDDINGS_BASE_URL": "http://localhost:11434/v1"},
     "MNEMO_EMBEDDINGS_BASE_URL is set but MNEMO_EMBEDDINGS is not openai"),
])
def test_embedding_settings_mnemo_cannot_use_are_refused_saying_why(env, complaint):
    with pytest.raises(ConfigError, match=complaint):
        Settings.from_env(env)


def test_the_documented_embedding_defaults_are_the_codes():
    from .test_docs import table

    rows = table("Environment variables")
    assert rows["MNEMO_EMBEDDINGS"] == f"`{DEFAULT_EMBEDDINGS}`"
    assert rows["MNEMO_EMBEDDINGS_TIMEOUT"] == f"`{DEFAULT_EMBEDDINGS_TIMEOUT_S}`"
    assert rows["MNEMO_EMBEDDINGS_BATCH_SIZE"] == f"`{DEFAULT_EMBEDDINGS_BATCH_SIZE}`"
