"""Outages heal: with its PostgreSQL gone, the server answers 503 fast and says so on /ready;
when PostgreSQL is back, the same process serves again.

The test runs a PostgreSQL cluster of its own (initdb and pg_ctl, as the postgres user, on a
free port) so that it can stop and start it; the machine's shared server is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, mnemo_command, server_env, start_server, stop_server

pytestmark = pytest.mark.slow

# A request while the database is away must be answered within this many seconds.
FAIL_FAST_S = 5
RECOVERY_S = 30
AS_ROOT = os.geteuid() == 0


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A throwaway PostgreSQL cluster owned by the postgres user."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="mnemo-outage-"))
        if AS_ROOT:
            user = pwd.getpwnam("postgres")
            os.chown(self.data, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *arguments: str) -> None:
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        prefix = ["runuser", "-u", "postgres", "--"] if AS_ROOT else []
        subprocess.run([*prefix, str(self.bin / tool), *arguments],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=50")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "log"),
                  "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def cluster():
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)")
    cluster = Cluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def timed(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=30, **kwargs)
    return response, time.monotonic() - started


def test_without_its_database_the_server_fails_fast_with_503_and_heals_in_the_same_process(
        cluster, tmp_path):
    env = server_env(MNEMO_DATABASE_URL=cluster.url, MNEMO_VALIDATE_RESPONSES="true")
    process, base = start_server([*mnemo_command(), "serve", "--port", "{port}", "--workers", "1"],
                                 env, cwd=tmp_path)
    try:
        body = {"memory": "Likes tea", "user_id": "u", "topics": ["drinks"]}
        kept = httpx.post(f"{base}/memories", json=body).json()
        assert httpx.get(f"{base}/ready").json() == {"status": "ok", "databases": {"mnemo": "ok"},
                                                     "embedding_backlog": {"mnemo": {"mnemo_memories": 0}}}

        cluster.stop()
        requests = [
            ("GET", f"{base}/memories/{kept['memory_id']}", {}),
            ("GET", f"{base}/memories", {}),
            ("POST", f"{base}/memories", {"json": body}),
            ("PATCH", f"{base}/memories/{kept['memory_id']}", {"json": body}),
            ("DELETE", f"{base}/memories/{kept['memory_id']}", {}),
            ("GET", f"{base}/memory_topics", {}),
            ("GET", f"{base}/user_memory_stats", {}),
        ]
        for method, url, kwargs in requests:
            response, elapsed = timed(method, url, **kwargs)
            assert response.status_code == 503, (method, url, response.text)
            assert elapsed < FAIL_FAST_S, (method, url, elapsed)
            assert int(response.headers["Retry-After"]) > 0
            assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"
        ready, elapsed = timed("GET", f"{base}/ready")
        assert (ready.status_code, elapsed < FAIL_FAST_S) == (503, True)
        assert int(ready.headers["Retry-After"]) > 0
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["databases"] == {"mnemo": "unavailable"}
        assert ready.json()["error_code"] == "DATABASE_UNAVAILABLE"
        # Liveness stays up: restarting the process would not bring the database back.
        assert httpx.get(f"{base}/health").status_code == 200

        cluster.start()
        deadline = time.monotonic() + RECOVERY_S
        while httpx.get(f"{base}/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server did not see its database come back"
            time.sleep(0.2)
        assert process.poll() is None  # the same process, never restarted
        fetched = httpx.get(f"{base}/memories/{kept['memory_id']}")
        assert fetched.json() == kept
        created = httpx.post(f"{base}/memories", json={**body, "memory": "after"})
        assert created.status_code == 200
        assert httpx.patch(f"{base}/memories/{kept['memory_id']}",
                           json={**body, "memory": "changed"}).status_code == 200
        assert httpx.get(f"{base}/memories").json()["meta"]["total_count"] == 2
    finally:
        assert stop_server(process) in (0, -15), process.stdout.read().decode()[-3000:]
