"""Mnemo and Agno AgentOS side by side: same data, same machine, same workers, same load.

usage: python bench/run.py [--sizes 100000,1000000] [--backends sqlite,postgresql]
                           [--duration 10] [--connections 16] [--workers 2]

For each size it builds the data set (``../shared/bench/dataset.py``), loads it once into a
Mnemo database (``mnemo import``) and an Agno database (Agno's own bulk upsert, in Agno's own
virtualenv), and keeps those as pristine copies. For each backend it then starts Agno AgentOS
(gunicorn, uvicorn workers) and ``mnemo serve`` one after the other, each on a fresh copy of
its database, and drives every operation with wrk. Results go to ``bench/results/``
(``results.json``, ``RESULTS.md``) and the chart to ``docs/performance.png``.

Needs wrk (Debian: ``apt-get install wrk``), and for PostgreSQL a server where
``--postgres-url``'s user may create databases.
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
from urllib.parse import quote

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
# Creates last: they add to the data the other operations read.
OPERATIONS = ["health", "get", "list_user", "list", "topic_filter", "search_content", "user_memory_stats",
              "memory_topics", "create"]
# Operations served by an index, whose latency must not grow much with the data.
INDEXED = ("get", "list_user", "list", "topic_filter", "search_content", "user_memory_stats",
           "memory_topics")
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
    if args.report:
        return write_report(load_results(), args)
    if not shutil.which("wrk"):
        print("bench: wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2

    DATA.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
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


def save_results(results: list[Result]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))


def write_report(results: list[Result], args) -> int:
    RESULTS.mkdir(exist_ok=True)
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
        for operation in operations:
            path = requests_file(operation, args.dataset_script, size)
            best: dict[str, Result] = {}
            for _ in range(args.repeat):
                for server in servers:
                    if server in best and best[server].estimated:
                        continue  # timed one request at a time already: nothing to gain
                    print(f"bench: {backend} {size} {server} {operation}", file=sys.stderr)
                    result = replace(load.run(bases[server], operation, path, backend, size, server),
                                     measured=args.started)
                    if server not in best or result.requests_per_s > best[server].requests_per_s:
                        best[server] = result
            for result in best.values():
                results = record(results, result)
    return results


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


class pristine_copy:
    """A fresh copy of one server's loaded database for one run; the database URL.

    The loaded original is kept (a file for SQLite, a template database for PostgreSQL), so
    creates made by one run never leak into the next.
    """

    def __init__(self, server: str, backend: str, size: int, dataset: Path, args):
        self.server, self.backend, self.size, self.dataset, self.args = server, backend, size, dataset, args
        self.name = f"bench_{server}_{size}"

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            original = DATA / f"{self.name}.db"
            if self.args.reload or not original.exists():
                for leftover in DATA.glob(f"{self.name}.db*"):
                    leftover.unlink()
                self.load(f"sqlite:///{original}")
            self.copy = DATA / f"{self.name}-run.db"
            for leftover in DATA.glob(f"{self.name}-run.db*"):
                leftover.unlink()
            shutil.copyfile(original, self.copy)
            return f"sqlite:///{self.copy}"
        admin = self.args.postgres_url
        if self.args.reload or not postgres_database_exists(admin, self.name):
            postgres_run(admin, f'DROP DATABASE IF EXISTS "{self.name}"', f'CREATE DATABASE "{self.name}"')
            self.load(postgres_url(admin, self.name))
        run_copy = self.name + "_run"
        postgres_run(admin, f'DROP DATABASE IF EXISTS "{run_copy}"',
                     f'CREATE DATABASE "{run_copy}" TEMPLATE "{self.name}"')
        return postgres_url(admin, run_copy)

    def load(self, url: str) -> None:
        print(f"bench: loading {self.size} memories into {self.server} ({self.backend})", file=sys.stderr)
        started = time.monotonic()
        if self.server == "mnemo":
            subprocess.run([mnemo_executable(), "import", str(self.dataset)], check=True,
                           env={**os.environ, "MNEMO_DATABASE_URL": url})
        else:
            subprocess.run([str(AGNO_VENV / "bin" / "python"), str(BENCH / "agno_load.py"),
                            agno_url(url), str(self.dataset)], check=True, cwd=BENCH,
                           env={**os.environ, "AGNO_TELEMETRY": "false"})
        print(f"bench: loaded in {time.monotonic() - started:.0f} s", file=sys.stderr)

    def __exit__(self, *_exc) -> None:
        if self.backend == "sqlite":
            for leftover in DATA.glob(f"{self.name}-run.db*"):
                leftover.unlink()
        else:
            postgres_run(self.args.postgres_url, f'DROP DATABASE IF EXISTS "{self.name}_run"')


def postgres_url(admin: str, database: str) -> str:
    return admin.rsplit("/", 1)[0] + "/" + database


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
            more = path.read_text().splitlines()[1:3] if one < 4 * self.slow else []
            times = sorted([one] + [timed_request(base, line) for line in more])
            p50 = times[len(times) // 2] * 1000
            result = Result(backend, size, server, operation, self.workers / (p50 / 1000), p50,
                            times[-1] * 1000, len(times), 0, estimated=True)
            print(f"bench:   one at a time: p50 {p50:.0f} ms", file=sys.stderr)
            return result
        self.wrk(base, path, 2)  # warm-up: caches, connection pools, lazy imports
        settle(base)
        output = self.wrk(base, path, self.duration)
        settle(base)
        result = Result(backend, size, server, operation, *parse_wrk(output))
        print(f"bench:   {result.requests_per_s:.1f} req/s, p50 {result.p50_ms:.1f} ms, "
              f"p99 {result.p99_ms:.1f} ms, {result.errors} errors", file=sys.stderr)
        return result


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
    for backend in backends:
        for size in sizes:
            if not any((backend, size, s, o) in by for s in ("agno", "mnemo") for o in GOALS):
                continue
            runs = sorted({r.measured or "an earlier run" for (b, n, _s, _o), r in by.items()
                           if (b, n) == (backend, size)})
            lines += [f"## {backend}, {size:,} memories", "", f"Measured {' and '.join(runs)}.", "",
                      "| operation | Agno req/s | Mnemo req/s | Mnemo ÷ Agno | goal | Agno p50 / p99 ms "
                      "| Mnemo p50 / p99 ms |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for operation in ["health", *GOALS]:
                agno, mnemo = (by.get((backend, size, s, operation)) for s in ("agno", "mnemo"))
                if not (agno or mnemo):
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
            health, create = (by.get((backend, size, "mnemo", o)) for o in ("health", "create"))
            if health and create:
                lines += ["", f"Mnemo's create answers {create.requests_per_s / health.requests_per_s:.0%} "
                              "of what its no-op `/health` does in the same server (goal ≥ 60 %)."]
            lines.append("")
    if any(r.estimated for r in results):
        lines += ["≈: one answer took longer than the `--slow` limit, so the operation was timed one "
                  "request at a time and its rate is the workers' count over the median latency: what "
                  "the server could do at best with every worker busy.", ""]
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
