"""A targets file, read a block of lines at a time: every line, numbered right.

The reader reads thousands of lines per thread hop; a target still comes out
for every line, in order, and a bad line or bad bytes are named by their line
number even far into a later block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voharvest import ParameterError
from voharvest.harvesting._targets import _BLOCK, iter_targets


async def read(path: Path) -> list[str]:
    return [t.key async for t in iter_targets(path)]


async def test_many_blocks_give_every_target_in_order(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    lines = [f"{i * 0.001:.3f} {(i % 1000) * 0.01 - 5:+.2f}  # field {i}\n" for i in range(20000)]
    path.write_text("# header\n\n" + "".join(lines))
    assert path.stat().st_size > 8 * _BLOCK  # (the reader reads several blocks)
    keys = await read(path)
    assert len(keys) == 20000
    assert keys[0] == "pos:0.0000000,-5.0000000"
    assert keys[-1] == f"pos:{19999 * 0.001:.7f},{999 * 0.01 - 5:+.7f}"


async def test_crlf_lone_cr_comments_and_names(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(b"10 20\r\n# a comment\r\nM 51\rNGC 1300   # a galaxy\n\n  \n11, 21 field")
    assert await read(path) == [
        "pos:10.0000000,+20.0000000",
        "name:m 51",
        "name:ngc 1300",
        "pos:11.0000000,+21.0000000",
    ]


async def test_a_bad_line_far_into_the_file_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    lines = ["10 20\n"] * 30000
    lines[25000] = "10\n"  # one number: no position (line 25,001, in a later block)
    path.write_text("".join(lines))
    with pytest.raises(ParameterError, match=rf"{path}:25001: "):
        await read(path)


async def test_bad_bytes_are_named_by_their_line(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(b"10 20\n" * 20000 + b"caf\xe9 field\n")
    with pytest.raises(ParameterError, match=rf"{path}:20001: not UTF-8"):
        await read(path)


async def test_a_folder_is_no_targets_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="can't read the targets file"):
        await read(tmp_path)
