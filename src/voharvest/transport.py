"""HTTP for voharvest: the client side's one user of aiohttp (with its error map).

:class:`Transport` owns (or borrows) one ``aiohttp.ClientSession`` and one
:class:`~voharvest._limiter.HostLimiter` per host. Every request goes through
the host's limiter (rate, concurrency, Retry-After pauses), has explicit
timeouts, a size cap on what it reads, and is retried on the failures that are
worth retrying (:mod:`voharvest._retries`: which, how long, when to stop).
Whatever aiohttp or asyncio raise is translated at this boundary into the
:class:`~voharvest.TransportError` family (:mod:`voharvest._http_errors`).

Retried: connection errors and resets, a kept-alive connection closed by the
server, timeouts, a body cut short, and the statuses of the retry policy
(408/429/500/502/503/504 by default). Not retried: other statuses, TLS
failures, errors that can't heal by waiting (a host name that does not
resolve, a connection refused on every address), redirect problems, size
caps, cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from ._clock import Clock, LoopClock
from ._config import ClientConfig, origin_of
from ._exceptions import (
    ClientStateError,
    HTTPStatusError,
    ParameterError,
    PayloadError,
    RequestTimeoutError,
    TooLargeError,
)
from ._http_errors import CAUGHT, translate, unsent
from ._limiter import HostLimiter, HostPaused, HostStats, Ticket
from ._retries import Budget, parse_retry_after, with_retries
from ._security import Authenticator, authentication_error
from ._version import __version__

__all__ = ["Answer", "Stream", "Transport", "default_user_agent", "parse_retry_after"]

logger = logging.getLogger("voharvest.transport")
T = TypeVar("T")

# How much of an error answer is kept (DAL services put their error VOTable there).
_ERROR_BODY = 64 * 1024


def default_user_agent() -> str:
    """``voharvest/<ver> Python/<ver> (<system>) (IVOA-science)``, as the IVOA note asks."""
    return (
        f"voharvest/{__version__} Python/{platform.python_version()} "
        f"({platform.system() or 'unknown'}) (IVOA-science)"
    )


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: final URL, status, headers, body."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes


class Stream:
    """An open streamed response (status already checked); read it with :meth:`chunks`."""

    def __init__(self, response: aiohttp.ClientResponse, stats: HostStats) -> None:
        self._response = response
        self._stats = stats
        self.status = response.status
        self.url = str(response.url)
        self.headers: Mapping[str, str] = response.headers

    @property
    def content_length(self) -> int | None:
        return self._response.content_length

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The body in pieces of at most ``size`` bytes."""
        try:
            async for chunk in self._response.content.iter_chunked(size):
                self._stats.bytes += len(chunk)
                yield chunk
        except CAUGHT as exc:
            raise translate(exc, self.url) from exc

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body as the socket delivered it: each buffered piece as is, never joined
        or copied (sizes vary, up to the transport's read size)."""
        content = self._response.content
        try:
            while True:
                piece, end_of_http_chunk = await content.readchunk()
                if not piece:
                    if end_of_http_chunk:
                        continue
                    return
                self._stats.bytes += len(piece)
                yield piece
        except CAUGHT as exc:
            raise translate(exc, self.url) from exc


class Transport:
    """One HTTP session with per-host politeness and retries; see the module doc."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self._session = session
        self._owns_session = session is None
        self._clock: Clock = clock or LoopClock()
        self._limiters: dict[str, HostLimiter] = {}
        # Our own session reports when each request's headers are written (the
        # spacing is measured there); a borrowed one can't, so slots count.
        self._wire = session is None
        #: Rates learned by an earlier run, by origin: a host's limiter starts there.
        self.start_rates: dict[str, float] = {}
        self.user_agent = config.user_agent or default_user_agent()
        self._auth: Authenticator | None = None

    # --- lifetime -------------------------------------------------------------

    async def open(self) -> None:
        if self.config.credentials:  # files are read now, where the client runs
            self._auth = await asyncio.to_thread(
                Authenticator.load, self.config.credentials, verify_tls=self.config.verify_tls
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections,
                limit_per_host=0,
                ttl_dns_cache=300,
                ssl=True if self.config.verify_tls else False,
            )
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(self._on_headers_sent)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": self.user_agent},
                trace_configs=[trace],
            )

    async def _on_headers_sent(
        self,
        session: aiohttp.ClientSession,
        context: Any,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        """aiohttp is about to write a request's headers: wait for the host's turn.

        A redirect to another host waits for that host's turn (it is that
        host's request), without holding one of its places.
        """
        ticket = context.trace_request_ctx
        if not isinstance(ticket, Ticket):
            return
        limiter = ticket.limiter
        url = str(params.url)
        try:
            if origin_of(url) != limiter.origin:
                limiter = self.limiter(url)
        except ParameterError:
            pass
        if limiter is ticket.limiter:
            ticket.sent_at = await limiter.at_wire(ticket)
        else:
            await limiter.at_wire()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()

    @property
    def authenticator(self) -> Authenticator | None:
        """Chooses credentials per URL (None: no credentials configured)."""
        return self._auth

    def _open(self, session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
        """``session.request``; with credentials, redirects are followed by the
        authenticator so that each hop gets its own origin's credential or none."""
        if self._auth is None:
            return session.request(method, url, **kwargs)
        return self._auth.send(session, method, url, **kwargs)

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise ClientStateError("the client is not open (use 'async with VOClient() as client')")
        return self._session

    # --- politeness -----------------------------------------------------------

    def limiter(self, url: str) -> HostLimiter:
        """The limiter of the URL's host (created on first use)."""
        origin = origin_of(url)
        limiter = self._limiters.get(origin)
        if limiter is None:
            limiter = HostLimiter(
                self.config.host_policy(origin),
                self._clock,
                gate=self.config.gate,
                origin=origin,
                start_rate=self.start_rates.get(origin),
            )
            self._limiters[origin] = limiter
        return limiter

    @property
    def limiters(self) -> dict[str, HostLimiter]:
        """The limiters met so far, by origin."""
        return dict(self._limiters)

    @property
    def stats(self) -> dict[str, HostStats]:
        """Per-host statistics, by origin (``scheme://host:port``)."""
        return {origin: limiter.stats for origin, limiter in self._limiters.items()}

    # --- retries --------------------------------------------------------------

    async def with_retries(
        self,
        url: str,
        attempt: Callable[[Budget], Awaitable[T]],
        *,
        idempotent: bool = True,
        attempts: int | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds or the retry policy gives up
        (:func:`voharvest._retries.with_retries`); ``attempts``: at most this many
        (charged) attempts, if fewer than the policy's."""
        return await with_retries(
            url,
            attempt,
            policy=self.config.retry,
            clock=self._clock,
            stats=self.limiter(url).stats,
            idempotent=idempotent,
            attempts=attempts,
            unsent=unsent,
        )

    # --- one attempt ----------------------------------------------------------

    def _timeout(self, budget: Budget | None, url: str) -> aiohttp.ClientTimeout:
        timeouts = self.config.timeouts
        if budget is None:  # a download: no total, only connect and stall
            return aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=timeouts.connect, sock_read=timeouts.read
            )
        remaining = budget.remaining()
        if remaining <= 0:
            raise RequestTimeoutError("the operation's deadline has passed", url=url)
        return aiohttp.ClientTimeout(
            total=min(timeouts.total, remaining),
            connect=None,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )

    @asynccontextmanager
    async def _send(
        self, session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request (see :meth:`_open`) as a response to read in a ``with`` block;
        if its host was paused before it reached the wire, wait and send it again."""
        while True:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    response = await stack.enter_async_context(
                        self._open(session, method, url, **kwargs)
                    )
                except HostPaused as paused:
                    waiting = paused.limiter
                else:
                    yield response
                    return
            await waiting.wait_ready()

    @asynccontextmanager
    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        ticket: Ticket,
        method: str,
        url: str,
        ok: tuple[int, ...],
        headers: Mapping[str, str] | None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request in its slot: sent (:meth:`_send`), counted, timed to its
        headers, its status checked (:meth:`_check_status`); the response to read."""
        stats = ticket.limiter.stats
        start = self._clock.now()
        stats.requests += 1
        async with self._send(
            session,
            method,
            url,
            trace_request_ctx=ticket,
            **self._request_kwargs(headers),
            **kwargs,
        ) as response:
            stats.responses += 1
            stats.latency_total += self._clock.now() - start
            await self._check_status(response, ticket, ok)
            yield response

    async def _check_status(
        self, response: aiohttp.ClientResponse, ticket: Ticket, ok: tuple[int, ...]
    ) -> None:
        limiter = ticket.limiter
        status = response.status
        limiter.stats.statuses[status] = limiter.stats.statuses.get(status, 0) + 1
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        limiter.answered(status, ticket.sent_at, retry_after=retry_after)
        if 200 <= status < 300 or status in ok:
            return
        if status in (401, 403):
            method = self._auth.method_of(response) if self._auth else "anonymous"
            body = await self._error_body(response)
            raise authentication_error(
                status,
                str(response.url),
                origin_of(str(response.url)),
                method,
                response.headers.get("WWW-Authenticate"),
                response.reason or "",
                body,
            )
        policy = self.config.retry
        if retry_after is not None:
            retry_after = min(retry_after, policy.retry_after_cap)
            if status in (429, 503):
                limiter.pause(retry_after)
        body = await self._error_body(response)
        summary = " ".join(body[:400].split())
        reason = response.reason or ""
        raise HTTPStatusError(
            f"HTTP {status} {reason}".strip() + (f": {summary[:200]}" if summary else ""),
            status=status,
            url=str(response.url),
            retryable=status in policy.statuses,
            retry_after=retry_after,
            body=body,
        )

    @staticmethod
    async def _error_body(response: aiohttp.ClientResponse) -> str:
        try:
            head = await asyncio.wait_for(response.content.read(_ERROR_BODY), 5)
        except CAUGHT:
            head = b""
        return head.decode("utf-8", errors="replace")

    async def _read(self, response: aiohttp.ClientResponse, cap: int, stats: HostStats) -> bytes:
        url = str(response.url)
        compressed = bool(response.headers.get("Content-Encoding", "identity") != "identity")
        length = response.content_length
        if length is not None and not compressed and length > cap:
            raise TooLargeError(f"answer of {length} bytes is over the cap of {cap}", url=url)
        buffer = bytearray()
        async for chunk in response.content.iter_chunked(256 * 1024):
            buffer += chunk
            stats.bytes += len(chunk)
            if len(buffer) > cap:
                raise TooLargeError(f"answer is over the cap of {cap} bytes", url=url)
        if length is not None and not compressed and len(buffer) != length:
            raise PayloadError(
                f"body of {len(buffer)} bytes, {length} announced", url=url, retryable=True
            )
        return bytes(buffer)

    def _request_kwargs(self, headers: Mapping[str, str] | None) -> dict[str, Any]:
        merged = {"User-Agent": self.user_agent}
        if headers:
            merged.update(headers)
        kwargs: dict[str, Any] = {"headers": merged, "max_redirects": self.config.max_redirects}
        if not self.config.verify_tls:
            kwargs["ssl"] = False
        return kwargs

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        idempotent: bool = True,
        allow_redirects: bool = True,
        ok: tuple[int, ...] = (),
        attempts: int | None = None,
    ) -> Answer:
        """One complete request (read whole, capped), retried as the policy says.

        ``ok``: statuses accepted besides 2xx (e.g. 303 with redirects off);
        any other status raises HTTPStatusError. ``attempts``: fewer attempts
        than the policy's (see :meth:`with_retries`).
        """
        cap = max_bytes if max_bytes is not None else self.config.max_answer_bytes
        limiter = self.limiter(url)
        session = self.session

        async def attempt(budget: Budget) -> Answer:
            async with limiter.slot(wire=self._wire) as ticket:
                budget.begin()
                try:
                    async with self._exchange(
                        session,
                        ticket,
                        method,
                        url,
                        ok,
                        headers,
                        data=data,
                        allow_redirects=allow_redirects,
                        timeout=self._timeout(budget, url),
                    ) as response:
                        body = await self._read(response, cap, limiter.stats)
                        return Answer(str(response.url), response.status, response.headers, body)
                except CAUGHT as exc:
                    raise translate(exc, url) from exc

        return await self.with_retries(url, attempt, idempotent=idempotent, attempts=attempts)

    @asynccontextmanager
    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = ()
    ) -> AsyncIterator[Stream]:
        """One streamed GET (no retries: the caller owns what was read so far).

        Holds the host's place for as long as the body is read; no total
        timeout, only connect and stall (``Timeouts.read``).
        """
        limiter = self.limiter(url)
        session = self.session
        async with limiter.slot(wire=self._wire) as ticket:
            handed_over = False
            try:
                async with self._exchange(
                    session, ticket, "GET", url, ok, headers, timeout=self._timeout(None, url)
                ) as response:
                    handed_over = True
                    yield Stream(response, limiter.stats)
            except CAUGHT as exc:
                if handed_over and not isinstance(exc, aiohttp.ClientError | TimeoutError):
                    raise  # the caller's own failure (a disk write, say): not HTTP's
                raise translate(exc, url) from exc
