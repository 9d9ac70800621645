"""One simulated host: its aiohttp application, rate limit, faults and counting.

Every request goes through :meth:`_HostServer._middleware` (counting, the
token bucket), then an endpoint: the searches (answers built by
:mod:`._searches`) and the images (:mod:`._sky`), all written by
:meth:`_HostServer._stream`, which paces the bytes, strikes faults half-way
through a body and counts what was handed to the connection (the bodies,
byte ranges and broken connections themselves: :mod:`._wire`).
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
import hashlib
import math
import random
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ._auth import capabilities
from ._config import FAULT_KINDS, IMAGE_FORMATS, SEARCH_FAULTS
from ._searches import Answer, registry_answer, sia1_answer, sia2_answer
from ._sky import tile_by_id
from ._vo_answers import vo_sia1_answer, vo_sia2_answer, vo_tap_answer, vo_tap_resources
from ._votables import error_votable
from ._wire import Blob, Body, abort, parse_range

if TYPE_CHECKING:
    from ._farm import FarmHost, VOFarm

__all__ = ["LAST_MODIFIED", "HostServer"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Last-Modified of every image: fixed, so validators survive a farm restart.
LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"
_CHUNK = 256 * 1024
_SEARCH_PATHS = frozenset({"/sia", "/sia2/query", "/tap/sync"})


class HostServer:
    """The aiohttp application of one host."""

    def __init__(self, farm: VOFarm, host: FarmHost) -> None:
        self.farm = farm
        self.host = host
        self.config = host.config
        self.counters = host.counters
        self._rng = random.Random(f"vofarm-{farm.seed}-{host.index}")
        self._tokens = self.config.burst
        self._refilled = time.monotonic()
        self._arrivals: list[float] = []  # the latest arrivals, in time order (no-burst)
        self.runner: web.AppRunner | None = None

    # --- plumbing ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/sia", self._sia1)
        app.router.add_get("/sia2/query", self._sia2)
        app.router.add_route("GET", "/tap/sync", self._tap_sync)
        app.router.add_route("POST", "/tap/sync", self._tap_sync)
        app.router.add_get("/images/{name}", self._image)
        app.router.add_get("/capabilities", self._capabilities)
        if self.farm.vo is not None:  # a FarmVO's TAP endpoints, as pyvo reads them
            app.router.add_get("/tap/{vosi:capabilities|tables}", self._tap_vosi)
        self.runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host.address, 0, ssl_context=self.config.tls)
        try:
            await site.start()
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"VOFarm can't listen on {self.host.address} ({exc.strerror}); on systems "
                "where only 127.0.0.1 is a loopback address, pass addresses=['127.0.0.1'] * n "
                "or alias the addresses (macOS: sudo ifconfig lo0 alias 127.0.0.2 up)",
            ) from exc
        self.host.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        counters = self.counters
        counters.requests += 1
        counters.in_flight += 1
        counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
        arrived = arrival(request)
        if counters.first_request_at is None:
            counters.first_request_at = arrived
        since_first = arrived - counters.first_request_at
        try:
            if not self._take_token(arrived):
                counters.rate_violations += 1
                counters.refusal_times.append(since_first)
                interval = 1.0 / self.config.rate_limit if self.config.rate_limit else 0.0
                if self.farm.watch.stalled_recently(time.monotonic(), at_least=interval):
                    counters.rate_violations_after_stall += 1
                if self.config.enforce:
                    response = await self._send(
                        request,
                        self.config.refusal,
                        b"rate limit exceeded\n",
                        "text/plain",
                        retry_after=True,
                    )
                    counters.statuses[response.status] += 1
                    return response
            auth = self.config.auth
            refusal = auth.refusal(request) if auth and request.path != "/capabilities" else None
            if refusal is not None:
                counters.statuses[refusal.status] += 1
                return refusal
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                counters.statuses[exc.status] += 1
                raise
            counters.statuses[response.status] += 1
            if response.status == 200 and request.path in _SEARCH_PATHS:
                counters.search_times.append(time.monotonic() - counters.first_request_at)
            return response
        finally:
            counters.in_flight -= 1

    def _take_token(self, arrived: float) -> bool:
        """Whether a request that reached the host at ``arrived`` is within its rate."""
        rate = self.config.rate_limit
        if rate is None:
            return True
        if self.config.no_burst:
            # Closer than 1/rate (less a little jitter) to its neighbour in time:
            # refused. Requests can reach the handlers out of arrival order (a
            # loop turn takes several), so the neighbours on both sides count.
            arrivals = self._arrivals
            at = bisect.bisect(arrivals, arrived)
            arrivals.insert(at, arrived)
            if len(arrivals) > _ARRIVALS_KEPT:
                del arrivals[0]
                at -= 1
            gap = 1.0 / rate - self.config.tolerance
            before = arrivals[at - 1] if at > 0 else -math.inf
            after = arrivals[at + 1] if at + 1 < len(arrivals) else math.inf
            return arrived - before >= gap and after - arrived >= gap
        now = max(arrived, self._refilled)
        self._tokens = min(self.config.burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _draw(self, endpoint: str) -> str | None:
        """The fault to inject in this answer, if any (one seeded draw per request)."""
        faults = self.config.faults
        if not faults or endpoint not in self.config.fault_endpoints:
            return None
        draw = self._rng.random()
        total = 0.0
        for kind in FAULT_KINDS:
            probability = faults.get(kind, 0.0)
            if not probability or (endpoint == "images" and kind in SEARCH_FAULTS):
                continue
            total += probability
            if draw < total:
                self.counters.faults[kind] += 1
                return kind
        return None

    async def _send(
        self,
        request: web.Request,
        status: int,
        body: bytes,
        content_type: str,
        *,
        retry_after: bool = False,
        fault: str | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status)
        response.content_type = content_type
        form = self.config.retry_after
        if retry_after and form != "none":
            seconds = self.config.retry_after_seconds
            response.headers["Retry-After"] = (
                f"{seconds:g}"
                if form == "seconds"
                else email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)
            )
        await self._stream(request, response, Blob(body), 0, len(body), fault)
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: Body,
        start: int,
        end: int,
        fault: str | None,
        *,
        bandwidth: float | None = None,
    ) -> bool:
        """Send ``body[start:end]``, True if all of it; a reset/truncate/stall strikes half-way."""
        response.content_length = end - start
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                await response.write_eof()
                return False
            return await self._write(request, response, body, start, end, fault, bandwidth)
        except ConnectionError:  # the client went away
            return False

    async def _write(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: Body,
        start: int,
        end: int,
        fault: str | None,
        bandwidth: float | None,
    ) -> bool:
        cut = start + (end - start) // 2 if fault in ("reset", "truncate", "stall") else end
        chunk = _CHUNK if bandwidth is None else int(max(4096, min(_CHUNK, bandwidth / 20)))
        began = time.monotonic()
        sent = 0
        position = start
        for piece in body.chunks(start, end, chunk):
            if position <= cut < position + len(piece) and fault is not None:
                head = piece[: cut - position]
                if head:
                    await response.write(head)
                    self.counters.bytes_sent += len(head)
                    sent += len(head)
                if await self._strike(request, fault):
                    return False
                piece = piece[cut - position :]
                position = cut
                fault = None
            if self.farm.closing:
                abort(request, reset=False)
                return False
            await response.write(piece)
            self.counters.bytes_sent += len(piece)
            sent += len(piece)
            position += len(piece)
            if bandwidth is not None:
                ahead = sent / bandwidth - (time.monotonic() - began)
                if ahead > 0:
                    await self.farm.pause(ahead)
        if fault is not None and await self._strike(request, fault):
            return False
        await response.write_eof()
        return True

    async def _strike(self, request: web.Request, fault: str) -> bool:
        """Break the answer mid-body; True if the connection is gone."""
        if fault == "stall":
            await self.farm.pause(self.config.stall_seconds)
            return False
        await asyncio.sleep(0.02)  # let what was written reach the client first
        abort(request, reset=fault == "reset")
        return True

    # --- endpoints ------------------------------------------------------------------

    async def _search(
        self,
        request: web.Request,
        endpoint: str,
        answer: Callable[[], Answer],
        *,
        threaded: bool = False,
    ) -> web.StreamResponse:
        self.counters.searches += 1
        await self.farm.pause(self.config.latency)
        fault = self._draw(endpoint)
        if fault in ("503", "429"):
            return await self._send(
                request, int(fault), f"{fault}: injected\n".encode(), "text/plain", retry_after=True
            )
        # An answer that may take a while (a FarmVO's uploads) is made in a thread, so the
        # loop keeps serving the other hosts on time.
        status, body = await asyncio.to_thread(answer) if threaded else answer()
        if fault == "malformed":
            body = body[: len(body) // 2]
        elif fault == "query_error":
            body = error_votable("VOFarm injected a query_error fault")
        return await self._send(request, status, body, "application/x-votable+xml", fault=fault)

    async def _sia1(self, request: web.Request) -> web.StreamResponse:
        answer = sia1_answer if self.farm.vo is None else vo_sia1_answer
        return await self._search(
            request, "sia", lambda: answer(self.farm, self.host, request.query.items())
        )

    async def _sia2(self, request: web.Request) -> web.StreamResponse:
        answer = sia2_answer if self.farm.vo is None else vo_sia2_answer
        return await self._search(
            request, "sia2", lambda: answer(self.farm, self.host, request.query.items())
        )

    async def _tap_sync(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = {}
        files: dict[str, bytes] = {}  # uploaded parts (multipart/form-data files)
        for key, value in request.query.items():
            params.setdefault(key.upper(), value)
        if request.method == "POST":
            form = await request.post()
            for key, item in form.items():
                if isinstance(item, str):
                    params.setdefault(key.upper(), item)
                elif isinstance(item, web.FileField):
                    files.setdefault(key, item.file.read())
        if self.farm.vo is not None:
            return await self._search(
                request,
                "tap",
                lambda: vo_tap_answer(self.farm, self.host, params, files),
                threaded=bool(files),
            )
        return await self._search(request, "tap", lambda: registry_answer(self.farm, params))

    async def _tap_vosi(self, request: web.Request) -> web.StreamResponse:
        """A FarmVO's TAP capabilities and tables (what pyvo reads before a query)."""
        body = vo_tap_resources(self.host, request.match_info["vosi"])
        return web.Response(body=body, content_type="text/xml")

    async def _capabilities(self, request: web.Request) -> web.StreamResponse:
        """VOSI capabilities: each interface's security method (anonymous if open)."""
        body = capabilities(self.host, self.config.auth)
        return web.Response(body=body, content_type="text/xml")

    async def _image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        stem, _, extension = name.rpartition(".")
        tile = tile_by_id(stem)
        formats = {ext: mime for mime, ext in IMAGE_FORMATS.items() if mime in self.config.formats}
        if tile is None or extension not in formats:
            raise web.HTTPNotFound(text=f"no image {name}\n")
        path = request.path
        wanted = request.headers.get("Range")
        if request.method == "GET":
            self.counters.image_fetches[path] += 1
            self.counters.range_requests += int(wanted is not None)
        await self.farm.pause(self.config.latency)
        fault = self._draw("images")
        if fault in ("503", "429"):
            return await self._send(
                request, int(fault), f"{fault}: injected\n".encode(), "text/plain", retry_after=True
            )
        body: Body
        if extension == "fits":
            # Built in a thread (a header takes astropy a few ms; a JPEG, its encode):
            # the loop goes on stamping other requests' arrivals meanwhile.
            body = await asyncio.to_thread(
                self.farm.sky.fits, tile, self.config.image_bytes, self.config.bitpix
            )
        else:
            body = Blob(await asyncio.to_thread(self.farm.sky.jpeg, tile))
        size = body.size
        etag = (
            '"'
            + hashlib.blake2b(
                f"{self.farm.seed}/{name}/{size}/{self.config.bitpix}".encode(), digest_size=8
            ).hexdigest()
            + '"'
        )
        response = web.StreamResponse(status=200)
        response.content_type = formats[extension]
        response.headers["ETag"] = etag
        response.headers["Last-Modified"] = LAST_MODIFIED
        response.headers["Accept-Ranges"] = "bytes" if self.config.range_support else "none"
        start, end = 0, size
        if_range = request.headers.get("If-Range")
        if (
            wanted is not None
            and self.config.range_support
            and (if_range is None or if_range.strip() in (etag, LAST_MODIFIED))
        ):
            span = parse_range(wanted, size)
            if span == "416":
                response = web.StreamResponse(status=416)
                response.headers["Content-Range"] = f"bytes */{size}"
                await self._stream(request, response, Blob(b""), 0, 0, None)
                return response
            if isinstance(span, tuple):
                start, end = span
                response.set_status(206)
                response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
                self.counters.partial_responses += 1
        complete = await self._stream(
            request, response, body, start, end, fault, bandwidth=self.config.bandwidth
        )
        if complete and end == size:
            self.counters.completed_image_fetches[path] += 1
        return response


def arrival(request: web.Request) -> float:
    """When the request reached the host (``time.monotonic()`` seconds), as the kernel saw it.

    A farm sharing its CPUs with the clients it measures runs its handlers
    late now and then (a busy machine, a long loop turn): requests sent 100 ms
    apart can reach the handlers 40 ms apart. Rate checks use the time the
    request's last bytes reached the socket instead: Linux's ``TCP_INFO`` says
    how long ago that was (``tcpi_last_data_recv``, counted in scheduler ticks
    of 1-10 ms). Where it can't be read, the handler's own time is used.
    """
    now = time.monotonic()
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or _TCP_INFO is None:
        return now
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return now
    if len(info) < _TCP_INFO_BYTES:
        return now
    age_ms: int = struct.unpack_from("I", info, _LAST_DATA_RECV)[0]
    return now - min(age_ms, 60_000) / 1000.0


#: struct tcp_info (linux/tcp.h): 8 one-byte fields, then 32-bit ones, the
#: twelfth of which is tcpi_last_data_recv (milliseconds since data last arrived).
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if sys.platform == "linux" else None
_LAST_DATA_RECV = 8 + 11 * 4
_TCP_INFO_BYTES = _LAST_DATA_RECV + 4
#: How many arrivals a no-burst host remembers to judge a request against its neighbours.
_ARRIVALS_KEPT = 64
