"""docs/OPERATIONS.md documents every setting the code reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from mnemo import config
from mnemo.cli import main

from .command_line import run_mnemo

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
CODE = [ROOT / "mnemo", ROOT / "storage", ROOT / "handlers"]
ENV_NAME = re.compile(r"\b(?:MNEMO_[A-Z_]+|OS_SECURITY_KEY|JWT_VERIFICATION_KEY|OPENAI_[A-Z_]+)\b")


def table(heading: str) -> dict[str, str]:
    """The rows of the first table under ``### heading``: first cell (unquoted) -> last cell."""
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells[-1]
    return rows


def environment_variables_in_code() -> set[str]:
    return {name for directory in CODE for path in directory.rglob("*.py")
            for name in ENV_NAME.findall(path.read_text(encoding="utf-8"))}


def test_every_environment_variable_the_code_reads_is_documented_and_no_other():
    assert set(table("Environment variables")) == environment_variables_in_code()


def test_documented_defaults_of_the_environment_are_the_codes():
    rows = table("Environment variables")
    assert rows["MNEMO_DATABASE_URL"] == f"`{config.DEFAULT_DATABASE_URL}`"
    assert rows["MNEMO_DB_ID"] == f"`{config.DEFAULT_DB_ID}`"
    assert rows["MNEMO_TABLE"] == f"`{config.DEFAULT_TABLE}`"
    assert rows["MNEMO_VALIDATE_RESPONSES"] == f"`{str(config.Settings().validate_responses).lower()}`"
    assert rows["MNEMO_OPTIMIZE_TIMEOUT"] == f"`{config.DEFAULT_OPTIMIZE_TIMEOUT_S}`"


def test_every_config_file_key_is_documented_and_no_other():
    rows = table("Config file")
    assert set(rows) == set(config.DATABASE_KEYS)
    assert rows["tables"] == f'`["{config.DEFAULT_TABLE}"]`'


def options(verb: str) -> dict[str, click.Option]:
    return {option.opts[-1]: option for option in main.commands[verb].params
            if isinstance(option, click.Option)}


@pytest.mark.parametrize(("verb", "heading"), [("serve", "`mnemo serve`"), ("migrate", "`mnemo migrate`")])
def test_every_option_of_serve_and_migrate_is_documented_with_its_default(verb, heading):
    rows = table(heading)
    actual = options(verb)
    assert set(rows) == set(actual)
    for name, action in actual.items():
        if action.default is False:
            assert rows[name].startswith("off"), name
        elif type(action.default) in (str, int) and name != "--workers":
            assert rows[name] == f"`{action.default}`", name


def test_serve_help_lists_every_environment_variable_of_the_reference(capsys):
    assert run_mnemo(["serve", "--help"]) == 0
    environment = capsys.readouterr().out.split("Environment:", 1)[1]
    assert set(ENV_NAME.findall(environment)) == set(table("Environment variables"))


def test_the_connections_per_worker_in_the_scaling_advice_are_the_codes():
    from storage.database import CONNECTIONS_PER_PROCESS

    text = " ".join(OPERATIONS.read_text(encoding="utf-8").split())
    assert f"Each worker keeps up to {CONNECTIONS_PER_PROCESS} connections" in text
    assert f"replicas x workers x {CONNECTIONS_PER_PROCESS} below" in text
