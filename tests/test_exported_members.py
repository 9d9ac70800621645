"""The public names of the package: a change here is a change of the API."""

from __future__ import annotations

import voharvest


def test_exported_members():
    assert set(voharvest.__all__) == {
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
    }
    for name in voharvest.__all__:
        assert getattr(voharvest, name) is not None, name
