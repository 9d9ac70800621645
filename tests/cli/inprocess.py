"""The command line's ``main()`` run in this process, for tests that aren't about the subprocess.

Each ``python -m voharvest`` costs an interpreter and its imports (astropy, aiohttp)
on a busy machine: a second or more. Tests whose point is what a command does, not
how a process exits or writes to a pipe, run ``main()`` in a worker thread instead
(its own event loop there, while the test's servers go on serving on the test's
loop) and read what it printed through pytest's ``capsys``. Each behaviour that is
about exit codes or pipes keeps at least one real subprocess test
(tests/cli/test_cli.py, tests/cli/test_demo.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from voharvest.cli import main


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors exit 2 by raising
        assert isinstance(exc.code, int), exc.code
        return exc.code


async def voharvest_here(
    capsys: pytest.CaptureFixture[str], *args: str | Path
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``voharvest ARGS``, as main() returns and prints them."""
    capsys.readouterr()  # what came before is not this command's
    code = await asyncio.to_thread(_run, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def voharvest_here_sync(
    capsys: pytest.CaptureFixture[str], *args: str | Path
) -> tuple[int, str, str]:
    """The same, for a test without an event loop."""
    capsys.readouterr()
    code = _run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err
