"""``mnemo`` run in the test's own process, as its console script runs it."""

from __future__ import annotations

import pytest

from mnemo.cli import main


def run_mnemo(arguments: list[str]) -> int:
    """The exit code of ``mnemo ARGUMENTS``; what it printed is left for capsys."""
    with pytest.raises(SystemExit) as exited:
        main(arguments, prog_name="mnemo")
    return exited.value.code
