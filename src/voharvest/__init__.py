"""voharvest: fast, polite, resumable harvesting of the IVOA Virtual Observatory."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._auth import BasicAuth, BearerToken, ClientCertificate, Cookies, Credentials
from ._config import ClientConfig, HostPolicy, RegistryEndpoint, RetryPolicy, Timeouts
from ._exceptions import (
    AuthenticationError,
    ClientStateError,
    ConnectError,
    DataLinkError,
    FormatError,
    HTTPStatusError,
    JobError,
    NameResolutionError,
    NoServiceError,
    OverflowWarning,
    ParameterError,
    PayloadError,
    QueryError,
    RedirectError,
    RequestTimeoutError,
    ServiceError,
    StorageError,
    TooLargeError,
    TransportError,
    UnsupportedConstraintError,
    VOHarvestError,
    VOHarvestWarning,
)
from ._version import __version__
from .protocol.regtap import RegistryFeatures
from .protocol.soda import Cutout

if TYPE_CHECKING:
    from ._discovery_options import DiscoveryOptions, DiscoveryResult, ServiceReport
    from ._limiter import HostStats
    from .client import VOClient
    from .harvesting import Harvest, HarvestItem, HarvestOptions, Target, harvest
    from .services import (
        RegistryResource,
        RegistryResources,
        SIA2Service,
        SIAService,
        TAPService,
    )

logging.getLogger("voharvest").addHandler(logging.NullHandler())

# The I/O layers are imported on first use, so that ``import voharvest.protocol``
# (in a parse worker, say) loads neither aiohttp nor asyncio.
_LAZY = {
    "DiscoveryOptions": "._discovery_options",
    "DiscoveryResult": "._discovery_options",
    "ServiceReport": "._discovery_options",
    "HostStats": "._limiter",
    "VOClient": ".client",
    "Harvest": ".harvesting",
    "HarvestItem": ".harvesting",
    "HarvestOptions": ".harvesting",
    "Target": ".harvesting",
    "harvest": ".harvesting",
    "RegistryResource": ".services",
    "RegistryResources": ".services",
    "SIA2Service": ".services",
    "SIAService": ".services",
    "TAPService": ".services",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'voharvest' has no attribute {name!r}")


__all__ = [
    "AuthenticationError",
    "BasicAuth",
    "BearerToken",
    "ClientCertificate",
    "ClientConfig",
    "ClientStateError",
    "ConnectError",
    "Cookies",
    "Credentials",
    "Cutout",
    "DataLinkError",
    "DiscoveryOptions",
    "DiscoveryResult",
    "FormatError",
    "HTTPStatusError",
    "Harvest",
    "HarvestItem",
    "HarvestOptions",
    "HostPolicy",
    "HostStats",
    "JobError",
    "NameResolutionError",
    "NoServiceError",
    "OverflowWarning",
    "ParameterError",
    "PayloadError",
    "QueryError",
    "RedirectError",
    "RegistryEndpoint",
    "RegistryFeatures",
    "RegistryResource",
    "RegistryResources",
    "RequestTimeoutError",
    "RetryPolicy",
    "SIA2Service",
    "SIAService",
    "ServiceError",
    "ServiceReport",
    "StorageError",
    "TAPService",
    "Target",
    "Timeouts",
    "TooLargeError",
    "TransportError",
    "UnsupportedConstraintError",
    "VOClient",
    "VOHarvestError",
    "VOHarvestWarning",
    "__version__",
    "harvest",
]
