"""Registry search with failover: RegTAP endpoints tried in order, then again.

Each endpoint of the configuration is tried once, quickly (one attempt): when
one fails, can't run a constraint, or answers an error, the next one is
asked. Then those that failed in a way that may heal (a timeout, a 503) are
tried again with the retry policy's attempts. If all fail, one error names
every endpoint and its cause, and says what to do offline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ServiceError,
    TransportError,
    UnsupportedConstraintError,
    VOHarvestError,
)
from .protocol import regtap, tap, votable
from .services import RegistryResource, RegistryResources

if TYPE_CHECKING:
    from ._config import RegistryEndpoint
    from .services import ServiceClient

__all__ = ["search_registries"]

logger = logging.getLogger("voharvest.client")


def _may_heal(error: VOHarvestError | None) -> bool:
    return isinstance(error, TransportError) and error.retryable


def _no_registry(failures: dict[str, VOHarvestError]) -> VOHarvestError:
    """One error naming every registry endpoint tried, its cause, and what to do offline
    (when at least one could not be reached)."""
    errors = list(failures.values())
    if not any(isinstance(e, TransportError) for e in errors):
        return errors[-1]  # every registry was reached: its own error says it best
    lines = [f"no registry answered ({len(failures)} tried):"]
    lines += [f"  - {url}: {error}" for url, error in failures.items()]
    lines.append(
        "Offline or behind a firewall? Registry searches need the network: give the "
        "services' access URLs instead (sia_service(url); --service/--sia2 in the CLI), "
        "or point ClientConfig.registries (--registry) at a RegTAP service you can reach."
    )
    message = "\n".join(lines)
    if all(isinstance(e, TransportError | UnsupportedConstraintError) for e in errors):
        return TransportError(message, retryable=any(_may_heal(e) for e in errors))
    return ServiceError(message)


async def search_registries(
    client: ServiceClient,
    registries: Sequence[RegistryEndpoint],
    constraints: Mapping[str, Any],
) -> RegistryResources:
    """The resources matching ``constraints``, from the first registry that answers,
    bound to ``client``; see the module doc."""
    failures: dict[str, VOHarvestError] = {}
    for quick in (True, False):
        for endpoint in registries:
            if not quick and not _may_heal(failures.get(endpoint.url)):
                continue
            try:
                query = regtap.build_query(features=endpoint.features, **constraints)
            except UnsupportedConstraintError as exc:
                failures[endpoint.url] = exc
                continue
            try:
                decoded = await client.fetch_votable(
                    "POST",
                    endpoint.url.rstrip("/") + "/sync",
                    tap.sync_fields(query),
                    attempts=1 if quick else None,
                )
                resources = votable.registry_results(decoded)
            except (TransportError, ServiceError) as exc:
                logger.warning("registry %s failed: %s", endpoint.url, exc)
                failures[endpoint.url] = exc
                continue
            return RegistryResources(
                (RegistryResource.bind(resource, client) for resource in resources),
                table=resources,  # its astropy table only when to_table() is asked for
                overflow=resources.overflow,
                url=resources.url,
            )
    raise _no_registry(failures)
