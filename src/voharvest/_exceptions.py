"""The one error tree of voharvest.

Everything the library raises derives from :class:`VOHarvestError`; errors of
aiohttp, asyncio and astropy are translated where they happen and never escape
raw::

    VOHarvestError
    ├── ParameterError (also ValueError)      a request that can't be encoded
    │   └── UnsupportedConstraintError         the registry can't run this constraint
    ├── NoServiceError (also LookupError)      a resource has no interface of that kind
    ├── ClientStateError (also RuntimeError)   a closed client used, or reopened
    ├── StorageError (also OSError)            a file can't be written (disk full, permissions)
    ├── ServiceError                           a service answered, but not as it should
    │   ├── FormatError                        not a VOTable / UWS document, no table, ...
    │   ├── QueryError                         QUERY_STATUS=ERROR, with the server's message
    │   ├── JobError                           a UWS job ended but not COMPLETED
    │   ├── DataLinkError                      a DataLink error row, or no dataset to take
    │   └── NameResolutionError                Sesame doesn't know the name
    └── TransportError                         HTTP failed (after the retries allowed)
        ├── ConnectError                       connection refused, reset, closed, DNS
        ├── RequestTimeoutError                connect / stall / total / deadline
        ├── HTTPStatusError                    an HTTP error status (.status, .retry_after)
        │   └── AuthenticationError            401/403: .origin, .method tried, .challenge
        ├── PayloadError                       a body cut short or not the announced size
        ├── TooLargeError                      an answer over its size cap
        └── RedirectError                      a redirect loop, limit or non-HTTP target

A ``TransportError`` tells ``url``, ``attempts`` (how many were made) and
whether it was ``retryable``; its message says all three.

Warnings derive from :class:`VOHarvestWarning`; :class:`OverflowWarning` marks
an answer that the service truncated (QUERY_STATUS=OVERFLOW).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClientStateError",
    "ConnectError",
    "DataLinkError",
    "FormatError",
    "HTTPStatusError",
    "JobError",
    "NameResolutionError",
    "NoServiceError",
    "OverflowWarning",
    "ParameterError",
    "PayloadError",
    "QueryError",
    "RedirectError",
    "RequestTimeoutError",
    "ServiceError",
    "StorageError",
    "TooLargeError",
    "TransportError",
    "UnsupportedConstraintError",
    "VOHarvestError",
    "VOHarvestWarning",
]


def _restore(
    cls: type[BaseException], args: tuple[object, ...], state: dict[str, object]
) -> BaseException:
    error = cls.__new__(cls)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    return error


class VOHarvestError(Exception):
    """Base class of every error voharvest raises."""

    def __reduce__(self) -> tuple[object, ...]:
        # Keep keyword-only attributes across pickling (errors raised in worker processes).
        return (_restore, (type(self), self.args, dict(self.__dict__)))


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
    """The service reported QUERY_STATUS=ERROR; ``message`` is its own text.

    ``status`` is the HTTP status it came with when that was an error status.
    """

    status: int | None = None


class JobError(ServiceError):
    """A UWS job ended in a final phase other than COMPLETED; ``phase`` tells which."""

    def __init__(self, message: str, *, phase: str, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.phase = phase


class DataLinkError(ServiceError):
    """A DataLink document gave an error row for the dataset, or no link to take.

    ``dataset_id`` is the ID of the dataset concerned (where the document says).
    """

    def __init__(
        self, message: str, *, dataset_id: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.dataset_id = dataset_id


class ClientStateError(VOHarvestError, RuntimeError):
    """The client is not open: used before ``async with`` / after close, or reopened."""


class StorageError(VOHarvestError, OSError):
    """A downloaded file can't be written, renamed or removed on the local disk."""


class NameResolutionError(ServiceError):
    """The name resolver doesn't know this name (or answered nothing usable)."""


class TransportError(VOHarvestError):
    """An HTTP exchange failed, after as many attempts as the retry policy allowed."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        retryable: bool = False,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.retryable = retryable
        self.attempts = attempts

    def __str__(self) -> str:
        text = self.message
        if self.url:
            text += f" ({self.url})"
        if self.attempts > 1:
            text += f" after {self.attempts} attempts"
        return text


class ConnectError(TransportError):
    """The connection failed, was reset, or was closed by the server."""


class RequestTimeoutError(TransportError):
    """Connecting, waiting for a byte, the whole request, or the deadline took too long."""


class HTTPStatusError(TransportError):
    """The server answered with an HTTP error status.

    ``status``; ``retry_after`` in seconds when the server said when to come
    back; ``body`` the start of what it sent.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str | None = None,
        retryable: bool = False,
        attempts: int = 1,
        retry_after: float | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message, url=url, retryable=retryable, attempts=attempts)
        self.status = status
        self.retry_after = retry_after
        self.body = body


class AuthenticationError(HTTPStatusError):
    """401 or 403: the credential sent (or its absence) was not accepted. Never retried.

    ``origin`` (``scheme://host:port``) and ``method`` (the IVOA security
    method sent, ``"anonymous"`` for none) say what was tried; ``challenge``
    the auth-schemes a 401's ``WWW-Authenticate`` asks for (``("Basic",)``).
    No secret is ever part of it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str | None = None,
        origin: str = "",
        method: str = "anonymous",
        challenge: tuple[str, ...] = (),
        body: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(message, status=status, url=url, attempts=attempts, body=body)
        self.origin = origin
        self.method = method
        self.challenge = challenge


class PayloadError(TransportError):
    """The body was cut short, or differs from its announced length."""


class TooLargeError(TransportError):
    """An answer exceeded its size cap; it was not read further."""


class RedirectError(TransportError):
    """A redirect loop, too many redirects, or a redirect to a non-HTTP URL."""


class VOHarvestWarning(UserWarning):
    """Base class of the warnings voharvest emits."""


class OverflowWarning(VOHarvestWarning):
    """The service truncated its answer (QUERY_STATUS=OVERFLOW): there is more."""
