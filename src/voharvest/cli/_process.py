"""Settings for the process the command line runs in (never applied to a library user's).

glibc gives each thread that finds the existing malloc arenas busy an arena of
its own, up to eight per core. voharvest's file, journal and parse threads
each allocate a little (libxml2 documents, SQLite pages, exception objects)
and each arena so made settles at about 1 MiB: over a long harvest the process
grew by up to 6 MiB as threads, one by one, were given arenas of their own.
The command line caps the arenas at two (``mallopt(M_ARENA_MAX, 2)``, what
``MALLOC_ARENA_MAX=2`` does; a value in the environment wins). Applications
that embed voharvest choose for their own process, with that variable.
"""

from __future__ import annotations

import os
import sys

__all__ = ["MALLOC_ARENAS", "cap_malloc_arenas"]

#: Arenas the command line's process allows glibc's malloc.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # <malloc.h>


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process, before its threads
    start; False where it can't be done (not glibc) or the environment decides."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))  # (1 on success)
