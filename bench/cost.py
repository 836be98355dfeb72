"""CPU time per request of each operation, with the app called in-process (no server, no network).

usage: python bench/cost.py DATABASE_URL [--requests 1000] [--only OPERATION]

A load test's requests/s move with whatever else the machine is doing; the CPU time one request
costs this process barely does, so this is the number to compare before and after a change.
To see where an operation's time goes, run it alone under a sampling profiler:
``py-spy record --gil -o profile.svg -- python bench/cost.py URL --only list``. The database
should hold the benchmark data set (``mnemo import``); nothing is written to it but the
memories ``create`` adds.

CPU time still moves by tens of percent on a shared virtual machine. The instructions a
request executes do not: under callgrind, ``--instructions`` counts only the measured
requests (start-up and warm-up excluded) and prints them per request::

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        python bench/cost.py URL --only list --requests 200 --instructions
    callgrind_annotate /tmp/cg.out | grep "PROGRAM TOTALS"   # ÷ 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A question as agents ask one: most of its words are in no memory, "the" is in every one.
QUESTION = b"search_content=What%20does%20the%20user%20do%20for%20a%20living%3F"


def operations(url: str) -> dict[str, tuple[str, str, bytes, bytes]]:
    """(method, path, query, body) of each operation, for data from ../shared/bench/dataset.py."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        memory_id = conn.execute(sa.text("SELECT memory_id FROM mnemo_memories LIMIT 1")).scalar_one()
    engine.dispose()
    body = json.dumps({"memory": "Prefers technical explanations with code examples", "user_id": "user-5",
                       "topics": ["topic_1", "work"]}).encode()
    return {
        "ceiling": ("GET", "/health", b"", b""),
        "health": ("GET", "/health", b"", b""),
        "create": ("POST", "/memories", b"", body),
        "get": ("GET", f"/memories/{memory_id}", b"", b""),
        "list_user": ("GET", "/memories", b"user_id=user-5", b""),
        "list": ("GET", "/memories", b"limit=20", b""),
        "topic_filter": ("GET", "/memories", b"topics=topic_7", b""),
        "search_content": ("GET", "/memories", b"search_content=python", b""),
        "user_memory_stats": ("GET", "/user_memory_stats", b"", b""),
        "memory_topics": ("GET", "/memory_topics", b"", b""),
        # Search by meaning (embeddings on, the default): one user's memories, and everyone's.
        "semantic_user": ("GET", "/memories", b"user_id=user-5&search_mode=semantic&" + QUESTION, b""),
        "hybrid_user": ("GET", "/memories", b"user_id=user-5&search_mode=hybrid&" + QUESTION, b""),
        "semantic_all": ("GET", "/memories", b"search_mode=semantic&" + QUESTION, b""),
        "hybrid_all": ("GET", "/memories", b"search_mode=hybrid&" + QUESTION, b""),
    }


async def call(app, method: str, path: str, query: bytes, body: bytes) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    received = False
    status = []

    async def receive():
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def count_instructions(on: bool) -> None:
    """Switch callgrind's counting on or off for this process (see the module's docstring)."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                   check=True, capture_output=True)


async def measure(app, request, count: int, instructions: bool = False) -> float:
    """CPU seconds per request, of every thread of this process (handlers run on a pool)."""
    for _ in range(50):
        status = await call(app, *request)
        if status >= 300:
            raise SystemExit(f"cost: {request[:2]} answered {status}")
    if instructions:
        count_instructions(True)
    started = time.process_time()
    for _ in range(count):
        await call(app, *request)
    seconds = (time.process_time() - started) / count
    if instructions:
        count_instructions(False)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--only", metavar="OPERATION", help="measure this operation alone")
    parser.add_argument("--instructions", action="store_true",
                        help="under callgrind: count the measured requests only")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ["MNEMO_DATABASE_URL"] = args.database_url
    sys.path.insert(0, str(ROOT))
    from bench.ceiling_app import app as ceiling
    from mnemo.app import create_app

    mnemo = create_app()
    chosen = operations(args.database_url)
    if args.only:
        chosen = {args.only: chosen[args.only]}
    for name, request in chosen.items():
        app = ceiling if name == "ceiling" else mnemo
        seconds = asyncio.run(measure(app, request, args.requests, args.instructions))
        print(f"{name:18} {seconds * 1e6:8.0f} µs CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
