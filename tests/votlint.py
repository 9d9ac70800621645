"""STILTS ``votlint`` and astropy, as independent judges of the VOTables voharvest writes.

STILTS (Debian package ``stilts``) is a Java program: each run starts a JVM
(about half a second here), so the manifests a test run writes are gathered
and judged together at the end of the session, in one run per kind of document
(see :func:`votlint_together`). Without ``stilts`` the
checks are skipped, unless ``VOHARVEST_STILTS=required`` (CI sets it): then
its absence is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from astropy.io.votable import parse

#: Names of the VOTables voharvest writes (the manifest, per harvest and combined).
MANIFEST_NAMES = ("manifest.xml",)


def stilts() -> str | None:
    """The stilts command; skips (or, when required, fails) the caller without one."""
    found = shutil.which("stilts")
    if found is None:
        if os.environ.get("VOHARVEST_STILTS") == "required":
            pytest.fail("VOHARVEST_STILTS=required but there is no stilts command")
        pytest.skip("stilts is not installed (apt-get install stilts)")
    return found


def votlint(path: Path, command: str) -> list[str]:
    """What ``stilts votlint`` says about ``path``: every line it prints, [] if none."""
    done = subprocess.run(
        [command, "votlint", f"votable={path}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    reports = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0 and not reports:
        reports.append(f"stilts exited with status {done.returncode}")
    return reports


_ROOT = re.compile(r"<VOTABLE\b[^>]*>")
_ID = re.compile(r'\b(ID|ref)="([^"]*)"')
_AT = re.compile(r"\(l\.(\d+)(, c\.\d+)?\)")


def _body(text: str, index: int) -> tuple[str, str] | None:
    """(prolog and VOTABLE start tag, what the root holds with IDs made unique), or None."""
    root = _ROOT.search(text)
    end = text.rfind("</VOTABLE>")
    if root is None or end < root.end():
        return None
    inner = _ID.sub(lambda m: f'{m.group(1)}="{m.group(2)}_f{index}"', text[root.end() : end])
    return text[: root.end()], inner


def votlint_together(paths: list[Path], command: str, scratch: Path) -> dict[Path, list[str]]:
    """``votlint`` over many documents in few runs (a JVM start costs about half a second).

    Documents with the same prolog and VOTABLE start tag are judged as one: their
    RESOURCEs side by side under that root, IDs suffixed to stay unique; each
    report's line is traced back to its file. A document that can't be split so
    is judged alone.
    """
    reports: dict[Path, list[str]] = {}
    groups: dict[str, list[tuple[Path, str]]] = {}
    for index, path in enumerate(paths):
        split = _body(path.read_text(encoding="utf-8"), index)
        if split is None:
            reports[path] = votlint(path, command)
        else:
            groups.setdefault(split[0], []).append((path, split[1]))
    for number, (head, members) in enumerate(groups.items()):
        starts: list[tuple[int, Path]] = []
        line = head.count("\n") + 1
        parts = [head]
        for path, inner in members:
            starts.append((line, path))
            parts.append(inner)
            line += inner.count("\n")
        parts.append("</VOTABLE>\n")
        together = scratch / f"together-{number}.xml"
        together.write_text("".join(parts), encoding="utf-8")
        first = head.count("\n") + 1
        for report in votlint(together, command):
            found = _AT.search(report)
            where = int(found.group(1)) if found else 0
            start, owner = ([s for s in starts if s[0] <= where] or starts[:1])[-1]
            if found:  # the line in the file itself
                local = where - start + first
                report = f"{report[: found.start(1)]}{local}{report[found.end(1) :]}"
            reports.setdefault(owner, []).append(report)
    return reports


def astropy_check(path: Path) -> list[str]:
    """What astropy says when it reads ``path`` strictly (any spec warning is an error)."""
    try:
        parse(str(path), verify="exception").get_first_table().to_table()
    except Exception as exc:  # astropy raises many types: any is a report
        return [f"astropy: {type(exc).__name__}: {exc}"]
    return []


def judge(paths: Iterable[Path]) -> dict[Path, list[str]]:
    """Every report of STILTS and astropy about each of ``paths`` (files with none left out)."""
    command = stilts()
    assert command is not None
    files = sorted(set(paths))
    with tempfile.TemporaryDirectory(prefix="votlint-") as scratch:
        linted = votlint_together(files, command, Path(scratch))
    reports = {path: linted.get(path, []) + astropy_check(path) for path in files}
    return {path: found for path, found in reports.items() if found}


def written_under(root: Path) -> list[Path]:
    """The manifests (finished, not ``.part``) under ``root``."""
    return sorted(p for name in MANIFEST_NAMES for p in root.rglob(name) if p.is_file())
