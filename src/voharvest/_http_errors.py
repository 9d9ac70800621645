"""aiohttp, asyncio and OS errors as the :class:`~voharvest.TransportError` family.

The transport catches :data:`CAUGHT` around every request and read and raises
:func:`translate`'s answer instead, so nothing of aiohttp escapes raw. Each
error says whether waiting may heal it (``retryable``): a timeout, a reset, a
kept-alive connection the server closed, a body cut short may; a TLS failure, a
host name that does not resolve or a connection refused on every address of
the host won't. (A ``ClientTimeout`` expiry is a plain ``TimeoutError``, not an
``aiohttp.ClientError``: aio-libs/aiohttp#7122.)
"""

from __future__ import annotations

import aiohttp

from ._exceptions import (
    ConnectError,
    PayloadError,
    RedirectError,
    RequestTimeoutError,
    TransportError,
)

__all__ = ["CAUGHT", "translate", "unsent"]

#: What aiohttp, asyncio and the OS raise while a request is sent or read.
CAUGHT = (aiohttp.ClientError, TimeoutError, OSError)


def translate(exc: BaseException, url: str) -> TransportError:
    """aiohttp / asyncio / OS errors as our TransportError family."""
    if isinstance(exc, TransportError):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.TooManyRedirects):
        return RedirectError(f"too many redirects: {text}", url=url)
    redirect_errors = tuple(
        getattr(aiohttp, name)
        for name in ("InvalidUrlRedirectClientError", "NonHttpUrlRedirectClientError")
        if hasattr(aiohttp, name)
    )
    if redirect_errors and isinstance(exc, redirect_errors):
        return RedirectError(f"redirect to an invalid or non-HTTP URL: {text}", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return PayloadError(f"body cut short: {text}", url=url, retryable=True)
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
        return ConnectError(f"TLS failure: {text}", url=url, retryable=False)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return RequestTimeoutError(f"timed out ({type(exc).__name__})", url=url, retryable=True)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        # Waiting won't make a name resolve: not retried.
        return ConnectError(
            f"host name {exc.host!r} not found ({exc.os_error.strerror or exc.os_error}); "
            "check the name, or whether this machine is offline (no DNS)",
            url=url,
            retryable=False,
        )
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, ConnectionRefusedError
    ):
        # aiohttp tried every address of the host: nothing listens there.
        return ConnectError(
            f"connection refused by {exc.host}:{exc.port} (nothing listens there; "
            "is the service down, or the address wrong?)",
            url=url,
            retryable=False,
        )
    if isinstance(
        exc,
        aiohttp.ClientConnectorError
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | ConnectionError,
    ):
        return ConnectError(f"connection failed: {text}", url=url, retryable=True)
    if isinstance(exc, aiohttp.InvalidURL):
        return TransportError(f"invalid URL: {text}", url=url)
    return TransportError(f"HTTP failure: {type(exc).__name__}: {text}", url=url)


def unsent(exc: BaseException) -> bool:
    """Whether a failed request surely never reached the server: no connection was made."""
    return isinstance(exc.__cause__, aiohttp.ClientConnectorError)
