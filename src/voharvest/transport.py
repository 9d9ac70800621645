"""HTTP for voharvest: the only module that touches aiohttp.

:class:`Transport` owns (or borrows) one ``aiohttp.ClientSession`` and one
:class:`~voharvest._limiter.HostLimiter` per host. Every request goes through
the host's limiter (rate, concurrency, Retry-After pauses), has explicit
timeouts, a size cap on what it reads, and is retried with tenacity on the
failures that are worth retrying. Whatever aiohttp or asyncio raise is
translated here into the :class:`~voharvest.TransportError` family.

Retried: connection errors and resets, a kept-alive connection closed by the
server, timeouts, a body cut short, and the statuses of the retry policy
(408/429/500/502/503/504 by default). Not retried: other statuses, TLS
failures, errors that can't heal by waiting (a host name that does not
resolve, a connection refused on every address), redirect problems, size
caps, cancellation. A 429 or 503 whose Retry-After was honoured is charged to
the request's deadline, not to its attempts: against a throttling host a
request ends in success or a deadline error. A request that is not
idempotent (creating a UWS job) is retried only when it surely never reached
the application: the connection could not be made, or the host answered 429
or 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import platform
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from ._clock import Clock, LoopClock
from ._config import ClientConfig, origin_of
from ._exceptions import (
    ClientStateError,
    ConnectError,
    HTTPStatusError,
    ParameterError,
    PayloadError,
    RedirectError,
    RequestTimeoutError,
    TooLargeError,
    TransportError,
)
from ._limiter import HostLimiter, HostPaused, HostStats, Ticket
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


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: final URL, status, headers, body."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes


def _translate(exc: BaseException, url: str) -> TransportError:
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


_CAUGHT = (aiohttp.ClientError, TimeoutError, OSError)


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
        except _CAUGHT as exc:
            raise _translate(exc, self.url) from exc

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
        except _CAUGHT as exc:
            raise _translate(exc, self.url) from exc


class _Budget:
    """The deadline of one operation, counted from its first attempt's start."""

    def __init__(self, clock: Clock, deadline: float) -> None:
        self._clock = clock
        self._deadline = deadline
        self._start: float | None = None

    def begin(self) -> None:
        if self._start is None:
            self._start = self._clock.now()

    def remaining(self) -> float:
        if self._start is None:
            return self._deadline
        return self._deadline - (self._clock.now() - self._start)


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
        attempt: Callable[[_Budget], Awaitable[T]],
        *,
        idempotent: bool = True,
        attempts: int | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds or the retry policy gives up.

        A fresh tenacity state per call (shared state corrupts across tasks).
        The error finally raised is the last attempt's, with ``attempts`` set.
        ``attempts``: at most this many (charged) attempts, if fewer than the
        policy's (a failover's first quick pass over its endpoints).
        """
        policy = self.config.retry
        allowed = policy.attempts if attempts is None else max(1, min(attempts, policy.attempts))
        budget = _Budget(self._clock, policy.deadline)
        limiter = self.limiter(url)
        failures: list[TransportError] = []
        charged = 0  # failures charged to the attempts (not honoured Retry-Afters)
        over_deadline = False

        next_delay = 0.0

        def retryable(exc: BaseException) -> bool:
            nonlocal next_delay, charged, over_deadline
            if not isinstance(exc, TransportError) or not exc.retryable:
                return False
            if not idempotent and not (
                (isinstance(exc, HTTPStatusError) and exc.status in (429, 503))
                or isinstance(exc.__cause__, aiohttp.ClientConnectorError)
            ):
                return False
            if isinstance(exc, HTTPStatusError) and exc.retry_after is not None:
                if exc.status in (429, 503):
                    # The whole host is paused until then; the limiter holds us. The
                    # host said when to come back: that costs time, not an attempt.
                    next_delay = 0.0
                else:
                    next_delay = exc.retry_after  # only this request was told to wait
                    charged += 1
                needed = exc.retry_after
            else:
                charged += 1
                next_delay = policy.backoff(charged) + random.uniform(0, policy.jitter)
                needed = next_delay
            failures.append(exc)
            # Retry only if an attempt can still start before the deadline.
            if needed < budget.remaining():
                return True
            over_deadline = next_delay == 0.0 and isinstance(exc, HTTPStatusError)
            return False

        def wait(state: RetryCallState) -> float:
            return next_delay

        def before_sleep(state: RetryCallState) -> None:
            limiter.stats.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            logger.info("retrying %s (attempt %d failed: %s)", url, state.attempt_number, exc)

        retrying = AsyncRetrying(
            stop=lambda state: charged >= allowed,
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=self._clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        made = 0
        try:
            async for state in retrying:
                with state:
                    made = state.retry_state.attempt_number
                    return await attempt(budget)
        except TransportError as exc:
            exc.attempts = made
            limiter.stats.failures += 1
            throttled = [
                f for f in failures if isinstance(f, HTTPStatusError) and f.status in (429, 503)
            ]
            if isinstance(exc, RequestTimeoutError) and throttled and exc is not failures[-1]:
                raise RequestTimeoutError(
                    f"{exc.message}; the host throttled it {len(throttled)} times "
                    f"(last: {throttled[-1].message})",
                    url=url,
                    attempts=made,
                ) from exc
            if over_deadline:
                raise RequestTimeoutError(
                    f"the deadline of {policy.deadline:g} s would pass before the host lets "
                    f"the request through (last answer: {exc.message})",
                    url=url,
                    attempts=made,
                ) from exc
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    # --- one attempt ----------------------------------------------------------

    def _timeout(self, budget: _Budget | None, url: str) -> aiohttp.ClientTimeout:
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
        try:
            head = await asyncio.wait_for(response.content.read(_ERROR_BODY), 5)
        except _CAUGHT:
            head = b""
        body = head.decode("utf-8", errors="replace")
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
        except _CAUGHT:
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

        async def attempt(budget: _Budget) -> Answer:
            async with limiter.slot(wire=self._wire) as ticket:
                budget.begin()
                start = self._clock.now()
                limiter.stats.requests += 1
                try:
                    async with self._send(
                        session,
                        method,
                        url,
                        data=data,
                        allow_redirects=allow_redirects,
                        timeout=self._timeout(budget, url),
                        trace_request_ctx=ticket,
                        **self._request_kwargs(headers),
                    ) as response:
                        limiter.stats.responses += 1
                        limiter.stats.latency_total += self._clock.now() - start
                        await self._check_status(response, ticket, ok)
                        body = await self._read(response, cap, limiter.stats)
                        return Answer(str(response.url), response.status, response.headers, body)
                except _CAUGHT as exc:
                    raise _translate(exc, url) from exc

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
            start = self._clock.now()
            limiter.stats.requests += 1
            handed_over = False
            try:
                async with self._send(
                    session,
                    "GET",
                    url,
                    timeout=self._timeout(None, url),
                    trace_request_ctx=ticket,
                    **self._request_kwargs(headers),
                ) as response:
                    limiter.stats.responses += 1
                    limiter.stats.latency_total += self._clock.now() - start
                    await self._check_status(response, ticket, ok)
                    handed_over = True
                    yield Stream(response, limiter.stats)
            except _CAUGHT as exc:
                if handed_over and not isinstance(exc, aiohttp.ClientError | TimeoutError):
                    raise  # the caller's own failure (a disk write, say): not HTTP's
                raise _translate(exc, url) from exc
