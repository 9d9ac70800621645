"""The one error tree of voharvest.

Everything the library raises derives from :class:`VOHarvestError`; errors of
aiohttp, asyncio and astropy are translated where they happen and never escape
raw::

    VOHarvestError
    ├── ParameterError (also ValueError)      a request that can't be encoded
    │   └── UnsupportedConstraintError         the registry can't run this constraint
    ├── NoServiceError (also LookupError)      a resource has no interface of that kind
    └── ServiceError                           a service answered, but not as it should
        ├── FormatError                        not a VOTable / UWS document, no table, ...
        ├── QueryError                         QUERY_STATUS=ERROR, with the server's message
        └── JobError                           a UWS job ended in phase ERROR or ABORTED

Warnings derive from :class:`VOHarvestWarning`; :class:`OverflowWarning` marks
an answer that the service truncated (QUERY_STATUS=OVERFLOW).
"""

from __future__ import annotations

__all__ = [
    "FormatError",
    "JobError",
    "NoServiceError",
    "OverflowWarning",
    "ParameterError",
    "QueryError",
    "ServiceError",
    "UnsupportedConstraintError",
    "VOHarvestError",
    "VOHarvestWarning",
]


class VOHarvestError(Exception):
    """Base class of every error voharvest raises."""


class ParameterError(VOHarvestError, ValueError):
    """A user's request can't be turned into a valid VO request."""


class UnsupportedConstraintError(ParameterError):
    """The registry (as described by its features) can't run this constraint."""


class NoServiceError(VOHarvestError, LookupError):
    """A registry resource has no interface of the requested service kind."""


class ServiceError(VOHarvestError):
    """A service answered, but the answer is an error or not what was due.

    ``url`` is the request's URL where known.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url

    def __str__(self) -> str:
        if self.url:
            return f"{self.message} (from {self.url})"
        return self.message


class FormatError(ServiceError):
    """The answer isn't a document of the expected kind.

    ``snippet`` holds the start of the body, so a user can see what came
    instead (an HTML error page, a plain-text stack trace, ...).
    """

    def __init__(self, message: str, *, snippet: str = "", url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.snippet = snippet


class QueryError(ServiceError):
    """The service reported QUERY_STATUS=ERROR; ``message`` is its own text."""


class JobError(ServiceError):
    """A UWS job ended in phase ERROR or ABORTED; ``phase`` tells which."""

    def __init__(self, message: str, *, phase: str, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.phase = phase


class VOHarvestWarning(UserWarning):
    """Base class of the warnings voharvest emits."""


class OverflowWarning(VOHarvestWarning):
    """The service truncated its answer (QUERY_STATUS=OVERFLOW): there is more."""
