"""Recall by meaning: how often GET /memories finds the memory that answers an agent's question.

usage: python bench/recall.py [--modes substring,semantic,hybrid] [--size 20000]
                              [--url http://127.0.0.1:7777 --key KEY] [--agno]

``bench/recall_set.jsonl`` is a labelled set written for Mnemo: for each of its users, short
facts as an agent stores them (``{"user_id", "key", "memory", "topics"}``) and questions an
agent asks while helping that user (``{"user_id", "question", "answers": [key, ...]}``), worded
so that they share few words with the memory that answers them. The labelled memories are mixed
into the benchmark data set (``../shared/bench/dataset.py``): each labelled user also gets 50 to
100 of its memories under their own ``user_id``, so that a question ranks its answer among
unrelated memories of the same user, and the rest of the data set stays other users' memories.

Every question is asked scoped to its user, as an agent asks, in each mode:
``GET /memories?user_id=..&search_content=QUESTION&search_mode=MODE&limit=10``. The substring
mode sends no ``search_mode`` (its default), so it is exactly what Agno's client sends today.
A question's rank is the position of the first memory that answers it; recall@k is the share of
questions answered within the first k results, MRR the mean of 1/rank (0 past the tenth).

Without ``--url`` it builds the corpus, loads it into a temporary SQLite database with
``mnemo import`` and serves it with ``mnemo serve``, as ``bench/run.py`` does; with ``--url``
it creates the corpus's labelled users' memories in that running server over the API.
``--agno`` also asks Agno AgentOS (its own virtualenv, ``bench/run.py``'s) in substring mode.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SET = BENCH / "recall_set.jsonl"
DATASET_SCRIPT = ROOT.parent / "shared" / "bench" / "dataset.py"
MODES = ("substring", "semantic", "hybrid")
LIMIT = 10
# Seeds which data set memories each labelled user receives and when its labelled memories were
# written: the corpus is the same on every run.
SEED = 18
# Function words, left out of the overlap between a question and its answer: sharing "the" or
# "does" says nothing about whether a question gives its answer away.
STOPWORDS = frozenset((
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been",
    "before", "being", "but", "by", "can", "could", "did", "do", "does", "doing", "for", "from", "had",
    "has", "have", "having", "he", "her", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "just", "me", "might", "more", "most", "my", "no", "not", "of", "on", "or", "our", "out",
    "over", "own", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "too", "up", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yet",
    "much", "many", "get", "got", "one", "every", "only", "going", "still", "way",
))


@dataclass
class Question:
    user_id: str
    text: str
    answers: list[str]  # the memories' texts


@dataclass
class LabelledSet:
    memories: dict[str, dict[str, str]] = field(default_factory=dict)  # user -> key -> text
    topics: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    questions: list[Question] = field(default_factory=list)


def load_set(path: Path = SET) -> LabelledSet:
    labelled = LabelledSet()
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for record in records:
        if "memory" in record:
            labelled.memories.setdefault(record["user_id"], {})[record["key"]] = record["memory"]
            labelled.topics[(record["user_id"], record["key"])] = record.get("topics", [])
    for record in records:
        if "question" in record:
            own = labelled.memories[record["user_id"]]
            labelled.questions.append(Question(record["user_id"], record["question"],
                                               [own[key] for key in record["answers"]]))
    return labelled


def corpus(labelled: LabelledSet, size: int, script: Path = DATASET_SCRIPT) -> list[dict]:
    """The data set's first ``size`` memories with the labelled users' memories mixed in: rows
    in the data set's own format, ready for ``mnemo import``."""
    sys.path.insert(0, str(ROOT))
    from bench.run import dataset_module

    rows = list(dataset_module(script).rows(size))
    rnd = random.Random(SEED)
    taken = 0
    mixed = []
    for user, memories in labelled.memories.items():
        extra = rnd.randint(50, 100)
        for row in rows[taken:taken + extra]:
            mixed.append({**row, "user_id": user})
        taken += extra
        for key, text in memories.items():
            # Written at a time among the data set's, so no order by date favours them.
            template = rows[rnd.randrange(len(rows))]
            memory_id = uuid.uuid5(uuid.NAMESPACE_URL, f"mnemo-recall/{user}/{key}")
            mixed.append({**template, "memory_id": str(memory_id), "memory": text, "user_id": user,
                          "agent_id": None, "topics": labelled.topics[(user, key)]})
    if taken > len(rows):
        raise SystemExit(f"recall: --size {size} is too small to give every labelled user its distractors")
    mixed.extend(rows[taken:])
    return mixed


# -- the measures -----------------------------------------------------------------------------

def content_words(text: str) -> set[str]:
    """Lower-cased words less function words, with plural and verb endings cut, so that
    "kids" and "kid" or "plays" and "playing" count as the same word."""
    words = set()
    for word in re.findall(r"[\w']+", text.lower()):
        word = word.removesuffix("'s")
        if word in STOPWORDS or len(word) < 2:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        words.add(word)
    return words


def overlap(question: Question) -> float:
    """Share of the question's content words found in the memories that answer it."""
    asked = content_words(question.text)
    answer = set().union(*(content_words(a) for a in question.answers))
    return len(asked & answer) / len(asked) if asked else 0.0


@dataclass
class Scores:
    recall_1: float
    recall_5: float
    mrr: float
    found: float  # share of questions with any result at all


def score(ranked: list[list[str]], questions: list[Question]) -> Scores:
    """Scores of result lists (memory texts, best first), one per question."""
    recall_1 = recall_5 = reciprocal = found = 0.0
    for texts, question in zip(ranked, questions, strict=True):
        found += bool(texts)
        rank = next((i for i, text in enumerate(texts[:LIMIT], 1) if text in question.answers), None)
        if rank:
            recall_1 += rank == 1
            recall_5 += rank <= 5
            reciprocal += 1 / rank
    n = len(questions)
    return Scores(recall_1 / n, recall_5 / n, reciprocal / n, found / n)


def overlap_summary(labelled: LabelledSet) -> str:
    overlaps = [overlap(q) for q in labelled.questions]
    sharing = sum(o > 0 for o in overlaps)
    verbatim = sum(any(q.text.lower().rstrip("?") in a.lower() for a in q.answers)
                   for q in labelled.questions)
    return (f"{len(labelled.questions)} questions over {len(labelled.memories)} users "
            f"({sum(map(len, labelled.memories.values()))} labelled memories); mean word overlap "
            f"{sum(overlaps) / len(overlaps):.3f} (share of a question's content words found in its answer), "
            f"{sharing} questions share at least one content word with their answer, "
            f"{verbatim} are a substring of it.")


def table(rows: list[tuple[str, Scores]]) -> str:
    lines = ["| mode | recall@1 | recall@5 | MRR | questions with any result |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {s.recall_1:.3f} | {s.recall_5:.3f} | {s.mrr:.3f} | {s.found:.0%} |"
              for name, s in rows]
    return "\n".join(lines)


# -- over HTTP --------------------------------------------------------------------------------

def ask(base: str, headers: dict, questions: list[Question], mode: str | None) -> list[list[str]]:
    import httpx

    ranked = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for question in questions:
            params = {"user_id": question.user_id, "search_content": question.text, "limit": LIMIT}
            if mode:
                params["search_mode"] = mode
            response = client.get("/memories", params=params)
            if response.status_code >= 400:
                raise SystemExit(f"recall: {mode or 'substring'} answered {response.status_code}: "
                                 f"{response.text[:300]}")
            ranked.append([m["memory"] for m in response.json()["data"]])
    return ranked


def create_over_api(base: str, headers: dict, labelled: LabelledSet, rows: list[dict]) -> None:
    """The labelled users' memories, answers and distractors alike, created in a running server."""
    import httpx

    users = set(labelled.memories)
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for row in rows:
            if row["user_id"] in users:
                response = client.post("/memories", json={"memory": row["memory"], "user_id": row["user_id"],
                                                          "topics": row["topics"]})
                response.raise_for_status()


def run_http(args, labelled: LabelledSet, rows: list[dict]) -> list[tuple[str, Scores]]:
    sys.path.insert(0, str(ROOT))
    from bench import run

    results = []
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    with tempfile.TemporaryDirectory(prefix="mnemo-recall-") as tmp:
        dataset = Path(tmp) / "corpus.jsonl"
        dataset.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                           encoding="utf-8")
        if args.url:
            create_over_api(args.url, headers, labelled, rows)
            results += [(f"Mnemo {mode}", timed(args.url, headers, labelled, mode)) for mode in args.modes]
        else:
            url = f"sqlite:///{Path(tmp) / 'recall.db'}"
            started = time.monotonic()
            subprocess.run([run.mnemo_executable(), "import", str(dataset)], check=True,
                               env={**run.server_env("mnemo", url)})
            print(f"recall: loaded {len(rows)} memories in {time.monotonic() - started:.0f} s",
                  file=sys.stderr)
            with run.serving(run.server_command("mnemo", args.workers), run.server_env("mnemo", url)) as base:
                results += [(f"Mnemo {mode}", timed(base, {}, labelled, mode)) for mode in args.modes]
        if args.agno:
            run.agno_virtualenv()
            url = f"sqlite:///{Path(tmp) / 'agno.db'}"
            subprocess.run([str(run.AGNO_VENV / "bin" / "python"), str(BENCH / "agno_load.py"),
                                run.agno_url(url), str(dataset)], check=True, cwd=BENCH,
                               env={**os.environ, "AGNO_TELEMETRY": "false"})
            with run.serving(run.server_command("agno", args.workers), run.server_env("agno", url)) as base:
                results.append(("Agno AgentOS substring", timed(base, {}, labelled, "substring")))
    return results


def timed(base: str, headers: dict, labelled: LabelledSet, mode: str) -> Scores:
    started = time.monotonic()
    ranked = ask(base, headers, labelled.questions, None if mode == "substring" else mode)
    elapsed = time.monotonic() - started
    print(f"recall: {mode}: {len(ranked)} questions in {elapsed:.1f} s", file=sys.stderr)
    return score(ranked, labelled.questions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated search modes to ask in")
    parser.add_argument("--size", type=int, default=20000,
                        help="memories drawn from the data set (distractors and other users')")
    parser.add_argument("--url", help="a running Mnemo to create the labelled users in and ask; "
                                      "without it a temporary one is started")
    parser.add_argument("--key", default=os.environ.get("MNEMO_SECURITY_KEY"),
                        help="bearer key for --url (default: MNEMO_SECURITY_KEY)")
    parser.add_argument("--workers", type=int, default=1, help="workers of the servers started")
    parser.add_argument("--agno", action="store_true", help="also ask Agno AgentOS, in substring mode")
    parser.add_argument("--set", type=Path, default=SET, help="the labelled set")
    parser.add_argument("--dataset-script", type=Path, default=DATASET_SCRIPT)
    args = parser.parse_args(argv)
    args.modes = args.modes.split(",")
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")

    labelled = load_set(args.set)
    rows = corpus(labelled, args.size, args.dataset_script)
    results = run_http(args, labelled, rows)
    print(overlap_summary(labelled))
    print(f"Corpus: {len(rows)} memories; labelled users hold "
          f"{sum(r['user_id'] in labelled.memories for r in rows)} of them.\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
