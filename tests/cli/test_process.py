"""The command line's own process tunes glibc's malloc; a library user's is left alone.

Each thread that allocates gets a glibc arena of its own (up to eight per core),
and each settles at about 1 MiB: the command line caps them at two (counted
with glibc's ``malloc_info`` after eight threads allocated). And once a large
mapped block is freed, glibc serves blocks up to its size from the heap (and
keeps more free there): the command line pins that threshold (seen with
``mallinfo2``: a 600 KiB block after a freed 4 MiB one is still mapped).
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

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    mapped = "unknown"  # (mallinfo2 came with glibc 2.33)
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = MallInfo2
        big = bytearray(4 << 20)
        del big  # (glibc raises its threshold to 4 MiB here, unless it is pinned)
        before = libc.mallinfo2().hblks
        block = bytearray(600 << 10)
        mapped = libc.mallinfo2().hblks - before
        del block
    if not hasattr(libc, "malloc_info"):  # (not glibc: nothing counted, the test skips)
        open(out, "w").close()
        open(out + ".mapped", "w").write(str(mapped))
        sys.exit(0)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    handle = libc.fopen(out.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    with open(out + ".mapped", "w") as note:
        note.write(str(mapped))
    """
)


def arenas(mode: str, tmp_path: Path, **env: str) -> tuple[int, bool]:
    """(arenas after eight threads allocated, whether a 600 KiB block after a freed
    4 MiB one was mapped rather than served from the heap)."""
    script = tmp_path / "arenas.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{mode}.xml"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    argv = [sys.executable, str(script), mode, str(out)]
    if mode == "cli":
        argv += ["adql", "--servicetype", "sia"]  # what cli.main(None) reads
    subprocess.run(argv, check=True, env=environment, timeout=60, capture_output=True)
    mapped = Path(f"{out}.mapped").read_text()
    if mapped == "unknown":
        pytest.skip("no mallinfo2 in this C library (glibc < 2.33)")
    return out.read_text().count("<heap nr="), mapped == "1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_command_line_caps_malloc_arenas_and_a_library_user_keeps_glibcs(
    tmp_path: Path,
) -> None:
    plain, plain_mapped = arenas("none", tmp_path)
    if plain == 0:
        pytest.skip("no glibc malloc_info here")
    assert plain >= 4 and not plain_mapped  # eight threads, arenas of their own; no pin
    library = arenas("library", tmp_path)  # main(argv) in a library user's process
    assert library[0] >= 4 and not library[1]
    cli_arenas, cli_mapped = arenas("cli", tmp_path)
    assert cli_arenas <= 2 and cli_mapped
    # The environment decides where it says something.
    told = arenas("cli", tmp_path, MALLOC_ARENA_MAX="8", MALLOC_MMAP_THRESHOLD_="8388608")
    assert told[0] >= 4 and not told[1]
