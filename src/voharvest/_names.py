"""Object names to positions: Sesame (CDS), cached and shared per client.

A name is asked of the configured Sesame endpoints in order (the next one when
an endpoint fails), its answer parsed by :mod:`voharvest.protocol.sesame`.
Answers, and "unknown name", are kept for the client's lifetime, and
concurrent asks for one name share one request. astropy's coordinates, which
``import voharvest`` leaves out, are imported in a thread the first time a
position is built, not on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._exceptions import NameResolutionError, ServiceError, TransportError, VOHarvestError
from .protocol import sesame

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord

    from .transport import Transport

__all__ = ["NameResolver"]

logger = logging.getLogger("voharvest.client")

# One thread for the imports, one import at a time (two threads importing parts
# of astropy can deadlock), each started once per process.
_IMPORTER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="voharvest-import")
_IMPORTS: dict[str, concurrent.futures.Future[Any]] = {}


async def import_in_thread(name: str) -> None:
    """Import a heavy module (astropy's coordinates, say) in a thread, not on the loop.

    ``import voharvest`` leaves them out (the lean VOTable reader needs none);
    the first name to resolve loads them while the loop runs on. Callers that
    come meanwhile wait for the same import (a module half-imported by the thread would otherwise
    make them wait on the loop).
    """
    future = _IMPORTS.get(name)
    if future is None:
        future = _IMPORTS[name] = _IMPORTER.submit(importlib.import_module, name)
    if not future.done():
        await asyncio.shield(asyncio.wrap_future(future))
    future.result()


class NameResolver:
    """One client's Sesame lookups; see the module doc."""

    def __init__(self, transport: Transport, endpoints: Sequence[str]) -> None:
        self._transport = transport
        self._endpoints = endpoints
        self._names: dict[str, tuple[float, float]] = {}
        self._unknown_names: set[str] = set()
        self._resolving: dict[str, asyncio.Future[None]] = {}

    async def resolve(self, name: str) -> SkyCoord:
        """ICRS position of an object name."""
        key = " ".join(str(name).split()).lower()
        if key in self._unknown_names:
            raise NameResolutionError(f"Sesame doesn't know {name!r} (asked before)")
        if key not in self._names:
            pending = self._resolving.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._ask_sesame(name, key))
                self._resolving[key] = pending
                pending.add_done_callback(lambda done: self._resolved(key, done))
            await asyncio.shield(pending)
        ra, dec = self._names[key]
        await import_in_thread("astropy.coordinates")
        from astropy.coordinates import SkyCoord

        return SkyCoord(ra, dec, unit="deg", frame="icrs")

    def _resolved(self, key: str, done: asyncio.Future[None]) -> None:
        self._resolving.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have been cancelled

    async def _ask_sesame(self, name: str, key: str) -> None:
        failures: list[VOHarvestError] = []
        for base in self._endpoints:
            url = sesame.build_url(base, name)
            try:
                answer = await self._transport.request("GET", url, max_bytes=1024 * 1024)
                ra, dec = sesame.parse(answer.body, name, url=answer.url)
            except NameResolutionError:
                self._unknown_names.add(key)
                raise
            except (TransportError, ServiceError) as exc:
                logger.warning("name resolver %s failed: %s", base, exc)
                failures.append(exc)
                continue
            self._names[key] = (ra, dec)
            return
        raise failures[-1]
