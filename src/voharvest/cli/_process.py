"""Settings for the process the command line runs in (never applied to a library user's).

glibc's malloc, left to itself, lets a long harvest creep up by several MiB:

- it gives each thread that finds the existing arenas busy an arena of its
  own, up to eight per core, and voharvest's file, journal and parse threads
  each allocate a little (libxml2 documents, SQLite pages, exceptions): each
  arena settles at about 1 MiB, and threads get theirs one by one;
- once a large block it had mapped is freed, it raises its mapping threshold
  to that size and keeps twice as much free memory at the top of its heap.

The command line's process caps the arenas at two and pins both thresholds at
glibc's own defaults, 128 KiB (``mallopt``, what ``MALLOC_ARENA_MAX=2``,
``MALLOC_MMAP_THRESHOLD_=131072`` and ``MALLOC_TRIM_THRESHOLD_=131072`` do;
each such variable in the environment wins). Applications that embed voharvest
choose for their own process, with those variables.
"""

from __future__ import annotations

import os
import sys

__all__ = ["MALLOC_SETTINGS", "tune_malloc"]

#: What the command line's process asks of glibc's malloc: (mallopt parameter
#: from <malloc.h>, value, the environment variable that sets it instead).
MALLOC_SETTINGS = (
    (-8, 2, "MALLOC_ARENA_MAX"),  # M_ARENA_MAX
    (-3, 128 * 1024, "MALLOC_MMAP_THRESHOLD_"),  # M_MMAP_THRESHOLD
    (-1, 128 * 1024, "MALLOC_TRIM_THRESHOLD_"),  # M_TRIM_THRESHOLD
)


def tune_malloc() -> list[str]:
    """Apply :data:`MALLOC_SETTINGS` to this process, before its threads start; the
    variables' names of those applied (none where the C library isn't glibc)."""
    if not sys.platform.startswith("linux"):
        return []
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return [
        name
        for parameter, value, name in MALLOC_SETTINGS
        if name not in os.environ and mallopt(parameter, value) == 1
    ]
