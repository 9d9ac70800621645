"""Dask workers for these tests come from a fork server, not a fresh interpreter each.

``LocalCluster`` starts each worker process with multiprocessing's ``spawn`` by
default: a new Python that imports distributed (and its stack) again. With
``forkserver`` (what distributed's own test suite uses) one server process
imports them once and every worker after it is a fork of that clean process
(no threads of the test process come along). What the workers do is the same;
``env=`` still reaches each worker's environment (the nanny sets it in the
child). ``tests/dask/processes.py`` starts ``dask worker`` commands, not this.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package", autouse=True)
def _workers_forked_from_a_server() -> Iterator[None]:
    dask = pytest.importorskip("dask")
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        yield
