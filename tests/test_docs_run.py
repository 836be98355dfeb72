"""Every shell (```sh) and Python (```python) block of README.md and docs/*.md runs as written.

A block that cannot run in the suite says why in an HTML comment on the line before it,
``<!-- not run: the reason -->``; a mark without a reason, or one before no runnable block, is an
error. Every other block runs, the way a reader who has done the README's install runs it:

- All blocks share one directory, standing for the clone: README.md's first, then docs/*.md in
  name order, each document's blocks top to bottom. Its ``.venv`` is a link to the environment
  running the tests, and the venv's own bin directory is taken off ``PATH``, so a bare ``mnemo``
  fails here as it does for the reader. The environment carries no Mnemo or Agno setting.
- A shell block runs in bash with ``set -eo pipefail``: it passes when it exits 0. ``curl`` fails
  on an error answer (``--fail-with-body``), so an example that gets a 401 or a 404 fails, and
  ends each answer with a newline. Shell variables a block assigns (``NAME=...`` at the start of
  a line) are there for the later blocks of its document, as in one terminal.
- A block that calls ``localhost:7777`` (or ``127.0.0.1:7777``) gets a running ``mnemo serve`` in
  the directory, on a free port that replaces 7777: the document's own, once one of its blocks
  has started one (a block whose last command is ``mnemo serve`` keeps running in the
  background, as in a second terminal), otherwise one started here with the README's command,
  open, its optimize-memories model a fake OpenAI-compatible server on loopback. A block that
  reads ``OS_SECURITY_KEY`` or ``MNEMO_SECURITY_KEY`` gets a server started with a security key
  instead, and the key in its environment.
- A block naming PostgreSQL (a ``postgresql://`` URL) runs only when MNEMO_TEST_POSTGRES_URL is
  set; each placeholder URL it uses must be listed in PLACEHOLDER_URLS, and is replaced by a
  database made for this run on that server (a restore's target, new for each block), so that
  URL's role must be allowed to create databases (the blocks are skipped, saying so, otherwise).
- Where a block imports an Agno app's database (``import-agno --from URL``), one made by Agno's
  own SqliteDb or PostgresDb, holding two memories, is there.
- A block that needs a program that is not installed (sqlite3, pg_dump...) is skipped, saying so.
- A comment that is JSON (``# {"status":"ok"}``) is an answer the block must print, in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import POSTGRES_URL, server_env, start_server, stop_server
from .fake_openai import FakeOpenAI

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = ("sh", "python")
# Other names for them, which would keep a block from running: the documents write sh and python.
ALIASES = ("bash", "shell", "console", "zsh", "py", "python3", "pycon")
BLOCK_TIMEOUT_S = 60
SECURITY_KEY = "docs-run-security-key"
VENV_BIN = Path(sys.executable).parent

FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w+-]*)\s*$")
MARK = re.compile(r"^\s*<!--\s*not run\b(?P<colon>:?)(?P<reason>.*?)-->\s*$")
SERVER = re.compile(r"\b(?:localhost|127\.0\.0\.1):7777\b")
SERVES = re.compile(r"(?:^|\s)\S*mnemo serve\b")
ASSIGNS = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.M)
POSTGRES = re.compile(r"postgresql(?:\+\w+)?://[^\s\"'`]+")
AGNO_SOURCE = re.compile(r"import-agno\b.*?--from\s+(\S+)")
SECURITY = re.compile(r"\b(?:OS|MNEMO)_SECURITY_KEY\b")
TOOLS = ("sqlite3", "openssl", "pg_dump", "pg_restore", "psql", "gzip", "gunzip", "curl", "python3")

# The PostgreSQL URLs the documents use as placeholders, each standing for a database of this
# run: "db" one for the whole run, "newdb" a new empty one for each block (a restore's target).
PLACEHOLDER_URLS = {
    "postgresql://USER:PASSWORD@HOST:5432/DBNAME": "db",
    "postgresql://user@host/db": "db",
    "postgresql+psycopg://ai:ai@localhost:5532/ai": "db",
    "postgresql://mnemo@db.internal/mnemo": "db",
    "postgresql://USER@HOST/DB": "db",
    "postgresql://USER@HOST/NEWDB": "newdb",
}

# Runs before each shell block: errors stop it, and curl fails on an error answer.
PRELUDE = """\
set -eo pipefail
curl() {{ command curl --fail-with-body --max-time 20 -w '\\n' "$@"; }}
if [ -f {state} ]; then source {state}; fi
"""


@dataclass(frozen=True)
class Block:
    document: Path
    line: int  # of the opening fence, from 1
    language: str
    code: str
    not_run: str | None  # the mark's reason

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def parse(document: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a document, and what is wrong with its not-run marks."""
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks, problems = [], []
    mark, mark_line = None, 0
    index = 0
    while index < len(lines):
        line = lines[index]
        if found := MARK.match(line):
            if mark is not None:
                problems.append(f"{document.name}:{mark_line}: a not-run mark before no block")
            reason = found["reason"].strip()
            if not found["colon"] or not reason:
                problems.append(f"{document.name}:{index + 1}: a not-run mark must say why, "
                                "as <!-- not run: the reason -->")
            mark, mark_line = reason, index + 1
        elif fence := FENCE.match(line):
            indent = len(fence["indent"])
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            code = "\n".join(text[indent:] if text[:indent].strip() == "" else text.lstrip()
                             for text in lines[index + 1:end]) + "\n"
            language = fence["language"]
            if language in ALIASES:
                problems.append(f"{document.name}:{index + 1}: ```{language} is never run; "
                                f"write ```{'python' if language.startswith('py') else 'sh'}")
            if mark is not None and language not in RUNNABLE:
                problems.append(f"{document.name}:{mark_line}: a not-run mark before a "
                                f"```{language} block, which is never run")
            blocks.append(Block(document, index + 1, language, code, mark))
            mark = None
            index = end
        elif line.strip() and mark is not None:
            problems.append(f"{document.name}:{mark_line}: a not-run mark before no block")
            mark = None
        index += 1
    if mark is not None:
        problems.append(f"{document.name}:{mark_line}: a not-run mark before no block")
    return blocks, problems


BLOCKS = [block for document in DOCUMENTS for block in parse(document)[0] if block.language in RUNNABLE]


def test_every_not_run_mark_says_why_and_stands_before_a_runnable_block():
    """And no shell or Python block is kept from running by its language's name."""
    problems = [problem for document in DOCUMENTS for problem in parse(document)[1]]
    assert not problems, "\n".join(problems)


def test_the_blocks_are_found():
    # A change in how blocks are written must not make this test run nothing.
    assert sum(block.document.name == "README.md" for block in BLOCKS) >= 5
    assert {block.language for block in BLOCKS} == set(RUNNABLE)


# -- the reader's session --------------------------------------------------------------------


class Session:
    """The directory every block runs in, the servers they call, the PostgreSQL databases."""

    def __init__(self, directory: Path, scripts: Path):
        self.work = directory
        self.scripts = scripts
        (self.work / ".venv").symlink_to(sys.prefix, target_is_directory=True)
        self.fake_model = FakeOpenAI().start()
        self.servers: dict[str, tuple[subprocess.Popen, str]] = {}
        self.postgres: Postgres | bool | None = None  # False: its role may not create databases
        self.agno_sources: set[str] = set()

    def environment(self, **settings: str) -> dict[str, str]:
        env = server_env(**settings)
        venv_bin = VENV_BIN.resolve()
        env["PATH"] = os.pathsep.join(entry for entry in env.get("PATH", "").split(os.pathsep)
                                      if entry and Path(entry).resolve() != venv_bin)
        return env

    def server(self, block: Block) -> str:
        """The base URL of the server the block calls."""
        document = f"document:{block.document.name}"
        if document in self.servers:
            return self.servers[document][1]
        if SECURITY.search(block.code):
            return self.start("keyed", MNEMO_SECURITY_KEY=SECURITY_KEY,
                              MNEMO_OPENAI_BASE_URL=self.fake_model.base_url)
        return self.start("open", MNEMO_OPENAI_BASE_URL=self.fake_model.base_url)

    def start(self, name: str, **settings: str) -> str:
        if name not in self.servers:
            command = [str(self.work / ".venv" / "bin" / "mnemo"), "serve", "--port", "{port}"]
            self.servers[name] = start_server(command, self.environment(**settings), cwd=self.work)
        return self.servers[name][1]

    def serve_in_background(self, block: Block, script: str) -> None:
        """A block that ends in ``mnemo serve``: the document's server from now on."""
        name = f"document:{block.document.name}"
        if name in self.servers:
            stop_server(self.servers.pop(name)[0])
        # On the command line, where start_server puts the port it chose in place of {port}.
        self.servers[name] = start_server(["bash", "-c", script], self.environment(), cwd=self.work)

    def write_script(self, block: Block, script: str) -> Path:
        suffix = "py" if block.language == "python" else "sh"
        path = self.scripts / f"{block.document.stem}-{block.line}.{suffix}"
        path.write_text(script, encoding="utf-8")
        return path

    def state_file(self, block: Block) -> Path:
        return self.scripts / f"{block.document.stem}.state"

    def close(self) -> list[str]:
        problems = []
        for name, (process, _base) in self.servers.items():
            code = stop_server(process)
            # uvicorn re-raises SIGTERM once it has shut down; bash then reports it as 128+15.
            if code not in (0, -15, 143):
                problems.append(f"server {name} exited {code}: {process.stdout.read().decode()[-2000:]}")
        self.fake_model.stop()
        if self.postgres:
            self.postgres.drop_all()
        return problems


class Postgres:
    """Databases made for this run on MNEMO_TEST_POSTGRES_URL's server, dropped afterwards."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = sa.make_url(url)
        self.made: list[str] = []
        self.shared = self.create()

    def admin(self, statement: str) -> None:
        import psycopg

        plain = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(statement)

    def create(self) -> str:
        name = f"mnemo_docs_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return name

    def url_of(self, database: str, driver: str) -> str:
        return self.url.set(drivername=driver, database=database).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.made:
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    if not (VENV_BIN / "mnemo").exists():
        pytest.skip(f"mnemo is not installed beside {sys.executable}")
    directory = tmp_path_factory.mktemp("clone")
    session = Session(directory, tmp_path_factory.mktemp("scripts"))
    yield session
    problems = session.close()
    assert not problems, "\n".join(problems)


# -- running a block -------------------------------------------------------------------------


def with_postgres(block: Block, session: Session) -> str:
    """The block's code with each placeholder URL replaced by a database of this run."""
    code = block.code
    urls = POSTGRES.findall(code)
    if not urls:
        return code
    if not POSTGRES_URL:
        pytest.skip("names a PostgreSQL database: runs when MNEMO_TEST_POSTGRES_URL is set")
    unknown = sorted(set(urls) - set(PLACEHOLDER_URLS))
    assert not unknown, f"{block.name}: add {unknown} to PLACEHOLDER_URLS in {Path(__file__).name}"
    if session.postgres is None:
        import psycopg

        try:
            session.postgres = Postgres(POSTGRES_URL)
        except psycopg.errors.InsufficientPrivilege:
            session.postgres = False
    if session.postgres is False:
        pytest.skip("names a PostgreSQL database: needs MNEMO_TEST_POSTGRES_URL's role to create databases")
    fresh = {}
    for url in sorted(set(urls), key=len, reverse=True):
        role = PLACEHOLDER_URLS[url]
        if role == "newdb":
            fresh.setdefault(role, session.postgres.create())
        database = fresh.get(role, session.postgres.shared)
        code = code.replace(url, session.postgres.url_of(database, url.split("://")[0]))
    return code


def make_agno_sources(code: str, session: Session) -> None:
    """An Agno database, made by Agno itself, wherever the block imports one from."""
    for line in code.splitlines():
        found = AGNO_SOURCE.search(line)
        if not found or found[1] in session.agno_sources:
            continue
        url = found[1]
        session.agno_sources.add(url)
        if url.startswith("sqlite:///"):
            from agno.db.sqlite import SqliteDb

            path = Path(url.removeprefix("sqlite:///"))
            path = path if path.is_absolute() else session.work / path
            path.parent.mkdir(parents=True, exist_ok=True)
            db = SqliteDb(db_file=str(path))
        else:
            from agno.db.postgres import PostgresDb

            schema = re.search(r"--schema\s+(\S+)", line)
            table = re.search(r"--table\s+(\S+)", line)
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
            db = PostgresDb(db_url=url, db_schema=schema[1] if schema else "ai",
                            memory_table=table[1] if table else "agno_memories")
        fill_agno(db)
        db.db_engine.dispose()


def fill_agno(db) -> None:
    from agno.db.schemas import UserMemory

    for text, topics in [("Likes hiking in the Alps", ["hobbies"]), ("Works in Lisbon", None)]:
        db.upsert_user_memory(UserMemory(memory=text, memory_id=str(uuid.uuid4()), topics=topics,
                                         user_id="agno-user", created_at=1_700_000_000))


def missing_tools(code: str) -> list[str]:
    return [tool for tool in TOOLS if re.search(rf"(?<![\w./-]){tool}\b", code) and not shutil.which(tool)]


def expected_answers(code: str) -> list:
    """The JSON values the block's comments show as answers."""
    answers = []
    for line in code.splitlines():
        comment = re.match(r"\s*#\s?(.*)", line)
        # Not an illustration, such as {...the summary...}, which is no JSON.
        if comment and comment[1][:1] in "{[":
            with contextlib.suppress(ValueError):
                answers.append(json.JSONDecoder().raw_decode(comment[1])[0])
    return answers


def printed(output: str) -> list:
    values = []
    for line in output.splitlines():
        with contextlib.suppress(ValueError):
            values.append(json.loads(line))
    return values


def last_command(code: str) -> str:
    lines = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines[-1] if lines else ""


# A block marked not run is no test at all (test_every_not_run_mark_says_why_and_stands_before_a_
# runnable_block holds the marks to their reasons), rather than one more skip in every run.
TO_RUN = [block for block in BLOCKS if not block.not_run]


@pytest.mark.parametrize("block", TO_RUN, ids=[block.name for block in TO_RUN])
def test_the_block_runs_as_written(block, session):
    if missing := missing_tools(block.code):
        pytest.skip(f"needs {', '.join(missing)}, which is not installed")
    code = with_postgres(block, session)
    make_agno_sources(code, session)
    env = session.environment()

    if block.language == "sh" and SERVES.search(last_command(code)):
        serve = last_command(code)
        code = code.replace(serve, serve.rstrip() + " --port {port}")
        session.serve_in_background(block, PRELUDE.format(state=session.state_file(block)) + code)
        return

    if SERVER.search(code):
        port = session.server(block).rsplit(":", 1)[1]
        code = SERVER.sub(lambda found: found[0].rsplit(":", 1)[0] + ":" + port, code)
        if SECURITY.search(code):
            env.update(OS_SECURITY_KEY=SECURITY_KEY, MNEMO_SECURITY_KEY=SECURITY_KEY)

    if block.language == "python":
        command = [str(session.work / ".venv" / "bin" / "python"), str(session.write_script(block, code))]
    else:
        state = session.state_file(block)
        names = " ".join(dict.fromkeys(ASSIGNS.findall(code)))
        keep = f"\n{{ declare -p {names} 2>/dev/null || true; }} >> {state}\n" if names else ""
        command = ["bash", str(session.write_script(block, PRELUDE.format(state=state) + code + keep))]
    try:
        result = subprocess.run(command, cwd=session.work, env=env, capture_output=True, text=True,
                                timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{block.name} did not finish in {BLOCK_TIMEOUT_S} s: {expired.stdout}{expired.stderr}")
    report = f"{block.name} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n" \
             f"--- stderr\n{result.stderr[-3000:]}"
    assert result.returncode == 0, report

    if block.language == "sh":
        answers = iter(printed(result.stdout))
        for expected in expected_answers(block.code):
            assert any(answer == expected for answer in answers), f"no answer {expected}\n{report}"
