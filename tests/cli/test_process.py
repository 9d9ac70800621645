"""The command line's own process caps glibc's malloc arenas; a library user's is left alone.

Each thread that allocates gets a glibc arena of its own (up to eight per core),
and each settles at about 1 MiB: the command line caps them at two. Counted
with glibc's ``malloc_info`` after eight threads allocated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import ctypes, sys, threading
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "cli":
        import voharvest.cli as cli
        sys.argv = [sys.argv[0], *sys.argv[3:]]  # (an offline command)
        assert cli.main(None) == 0
    elif mode == "library":
        import voharvest.cli as cli
        assert cli.main(["adql", "--servicetype", "sia"]) == 0

    together = threading.Barrier(8)

    def work():  # eight threads alive at once, each allocating
        for _ in range(20):
            kept = [bytearray(4000) for _ in range(50)]  # (malloc's, not pymalloc's)
            del kept
        together.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    handle = libc.fopen(out.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    """
)


def arenas(mode: str, tmp_path: Path, **env: str) -> int:
    script = tmp_path / "arenas.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{mode}.xml"
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    argv = [sys.executable, str(script), mode, str(out)]
    if mode == "cli":
        argv += ["adql", "--servicetype", "sia"]  # what cli.main(None) reads
    subprocess.run(argv, check=True, env=environment, timeout=60, capture_output=True)
    return out.read_text().count("<heap nr=")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_command_line_caps_malloc_arenas_and_a_library_user_keeps_glibcs(
    tmp_path: Path,
) -> None:
    plain = arenas("none", tmp_path)
    if plain == 0:
        pytest.skip("no glibc malloc_info here")
    assert plain >= 4  # eight threads: arenas of their own
    assert arenas("library", tmp_path) >= 4  # main(argv) in a library user's process
    assert arenas("cli", tmp_path) <= 2
    assert arenas("cli", tmp_path, MALLOC_ARENA_MAX="8") >= 4  # the environment decides
