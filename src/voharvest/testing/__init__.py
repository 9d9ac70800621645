"""Simulated VO hosts on loopback, for tests and benchmarks of any VO client.

:class:`VOFarm` starts ``N`` hosts in the running event loop, host ``i`` on
``127.0.0.(i+2)`` with its own ephemeral port. Each serves SIA 1.0 (``/sia``),
SIA 2.0 (``/sia2/query``), a TAP ``/sync`` endpoint answering registry queries
that list the farm's own services (``/tap/sync``), and the FITS and JPEG
images of a deterministic synthetic sky (``/images/<tile>.fits|.jpg``) —
with the latency, rate limit, bandwidth and faults its :class:`HostConfig`
asks for, counting everything in :class:`FarmCounters`::

    from voharvest.testing import HostConfig, VOFarm

    async with VOFarm(hosts=3, config=HostConfig(latency=0.05, rate_limit=10)) as farm:
        ...  # point the client at farm.registry_url or farm.hosts[i].sia2_url
        assert farm.counters[0].rate_violations == 0

``python -m voharvest.testing serve --hosts 20`` runs a farm in a process of
its own (see docs/testing.md). This package needs aiohttp, astropy and numpy,
nothing of voharvest's client.

:class:`EmbeddedSky` is a small VO of another kind: a registry, a name
resolver, and SIA 1.0/2.0 services with DataLink and SODA like those of the
NASA NAVO notebook, all showing one synthetic sky of real galaxies at their
real positions (``voharvest demo`` runs on it)::

    async with EmbeddedSky() as sky:
        async with VOClient(sky.client_config()) as client:
            ...

``VOFarm(hosts=..., vo=discovery_vo())`` turns the hosts into the sites of a
VO for global discovery (:class:`FarmVO`): each with a collection inside its
footprint, published as SIA 1.0, SIA 2.0 or ObsCore TAP resources whose
coverage MOCs and ``isservedby`` relationships the registry answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._auth import FARM_METHODS, FarmAuth
from ._catalogue import GALAXIES, Galaxy
from ._config import ENDPOINTS, FAULT_KINDS, HTTP_FAULTS, SEARCH_FAULTS, FarmCounters, HostConfig
from ._farm import FarmHost, VOFarm
from ._footprints import COVERAGE_MARGIN, COVERAGE_ORDER, Cone, Footprint, Zone
from ._host import LAST_MODIFIED
from ._sky import TILE_DEG, Tile, search_tiles, tile_by_id, tile_of
from ._vo import FarmService, FarmVO, Site, discovery_vo

if TYPE_CHECKING:
    from ._embedded import SURVEYS, EmbeddedSky


def __getattr__(name: str) -> Any:
    # The embedded sky draws its images with astropy.wcs: imported when first
    # asked for, so that a farm (``python -m voharvest.testing serve``) starts
    # without it.
    if name in ("SURVEYS", "EmbeddedSky"):
        from . import _embedded

        value = getattr(_embedded, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'voharvest.testing' has no attribute {name!r}")


__all__ = [
    "COVERAGE_MARGIN",
    "COVERAGE_ORDER",
    "ENDPOINTS",
    "FARM_METHODS",
    "FAULT_KINDS",
    "GALAXIES",
    "HTTP_FAULTS",
    "LAST_MODIFIED",
    "SEARCH_FAULTS",
    "SURVEYS",
    "TILE_DEG",
    "Cone",
    "EmbeddedSky",
    "FarmAuth",
    "FarmCounters",
    "FarmHost",
    "FarmService",
    "FarmVO",
    "Footprint",
    "Galaxy",
    "HostConfig",
    "Site",
    "Tile",
    "VOFarm",
    "Zone",
    "discovery_vo",
    "search_tiles",
    "tile_by_id",
    "tile_of",
]
