"""Transport: politeness per host, retries that honour Retry-After, timeouts, caps, cancellation.

Every figure here is measured where it matters: by the server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import (
    ClientConfig,
    ConnectError,
    HostPolicy,
    HTTPStatusError,
    PayloadError,
    RedirectError,
    RequestTimeoutError,
    RetryPolicy,
    Timeouts,
    TooLargeError,
    VOClient,
)
from voharvest._limiter import HostLimiter
from voharvest.transport import parse_retry_after

FAST_RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.0)


def config(**changes) -> ClientConfig:
    base = {"retry": FAST_RETRY, "host": HostPolicy(rate=math.inf, concurrency=8)}
    base.update(changes)
    return ClientConfig(**base)


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# --- the limiter on a virtual clock -------------------------------------------------


class VirtualClock:
    """Time that only moves when someone sleeps: exact, instant, one task at a time."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


async def test_slots_are_evenly_spaced_and_pauses_hold_them():
    clock = VirtualClock()
    limiter = HostLimiter(HostPolicy(rate=4, concurrency=1), clock)
    starts = []
    for _ in range(3):
        async with limiter.slot():
            starts.append(clock.now())
    assert starts == [0.0, 0.25, 0.5]
    limiter.pause(2.0)  # at t=0.5: nothing starts before 2.5
    async with limiter.slot():
        starts.append(clock.now())
    assert starts[-1] == pytest.approx(2.5)
    assert limiter.stats.pauses == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), (" 120 ", 120.0), ("0", 0.0), ("-5", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_retry_after_http_date():
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    header = email.utils.format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(header, now) == pytest.approx(90.0)
    past = email.utils.format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now) == 0.0


# --- politeness, measured by the server ---------------------------------------------


async def test_rate_limit_holds_as_the_server_measures_it(server: LocalServer):
    server.route("GET", "/ok", ok)
    rate = 20.0
    async with VOClient(config(host=HostPolicy(rate=rate, concurrency=8))) as client:
        await asyncio.gather(
            *(client.transport.request("GET", server.url("/ok")) for _ in range(25))
        )
    times = sorted(hit.at for hit in server.hits)
    assert len(times) == 25
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Slots are 50 ms apart; loopback jitter may shave a little off one gap, never more.
    assert min(gaps) >= 0.8 / rate
    # No window of one second ever holds more than rate + 1 requests.
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 1.0) <= rate + 1
    assert times[-1] - times[0] >= 24 / rate * 0.95


async def test_concurrency_cap_holds_as_the_server_measures_it(server: LocalServer):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.Response(text="ok")

    server.route("GET", "/slow", slow)
    async with VOClient(config(host=HostPolicy(rate=math.inf, concurrency=3))) as client:
        await asyncio.gather(
            *(client.transport.request("GET", server.url("/slow")) for _ in range(12))
        )
        stats = client.stats[f"http://127.0.0.1:{server.port}"]
    assert server.max_in_flight == 3
    assert stats.max_in_flight == 3
    assert stats.requests == 12


async def test_per_host_policies_apply_by_pattern(server: LocalServer):
    cfg = config(
        host=HostPolicy(rate=math.inf, concurrency=8),
        hosts=(("127.0.0.1", HostPolicy(rate=5, concurrency=1)),),
    )
    assert cfg.host_policy(f"http://127.0.0.1:{server.port}").rate == 5
    assert cfg.host_policy("https://example.org:443").rate == math.inf


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_pauses_the_whole_host(server: LocalServer, form: str):
    first = asyncio.Event()

    async def throttled(request: web.Request) -> web.Response:
        if not first.is_set():
            first.set()
            if form == "seconds":
                value = "1"
            else:
                value = email.utils.format_datetime(
                    datetime.now(UTC) + timedelta(seconds=2), usegmt=True
                )
            return web.Response(status=503, headers={"Retry-After": value}, text="busy")
        return web.Response(text="ok")

    server.route("GET", "/t", throttled)
    async with VOClient(config()) as client:
        leader = asyncio.create_task(client.transport.request("GET", server.url("/t")))
        await first.wait()
        await asyncio.sleep(0.05)  # the 503 has reached the client by now
        others = [client.transport.request("GET", server.url("/t")) for _ in range(3)]
        answers = await asyncio.gather(leader, *others)
    assert all(a.status == 200 for a in answers)
    t0 = server.hits[0].at
    later = [hit.at - t0 for hit in server.hits[1:]]
    assert len(later) == 4
    # An HTTP date has whole seconds: "2 s from now" is at least 1 s away.
    assert min(later) >= 0.95


# --- retries: each transient fault class ------------------------------------------


def faulty_once(kind: str):
    state = {"calls": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        state["calls"] += 1
        if state["calls"] > 1:
            return web.Response(text="recovered")
        if kind.isdigit():
            return web.Response(status=int(kind), text="transient")
        if kind == "reset":
            request.transport.close()
            return web.Response(text="never sent")
        if kind == "truncated":
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b"x" * 10)
            request.transport.close()
            return response
        if kind == "stall":
            await asyncio.sleep(5)
            return web.Response(text="too late")
        raise AssertionError(kind)

    return handler


@pytest.mark.parametrize(
    "kind", ["408", "429", "500", "502", "503", "504", "reset", "truncated", "stall"]
)
async def test_each_transient_fault_is_retried_and_succeeds(server: LocalServer, kind: str):
    server.route("GET", "/f", faulty_once(kind))
    cfg = config(timeouts=Timeouts(connect=5, read=0.3, total=10))
    async with VOClient(cfg) as client:
        answer = await client.transport.request("GET", server.url("/f"))
        stats = client.stats[f"http://127.0.0.1:{server.port}"]
    assert answer.body == b"recovered"
    assert len(server.hits_for("/f")) == 2
    # aiohttp itself retries an idempotent request once when the server drops the
    # connection before answering; every other fault is retried by our policy.
    assert stats.retries == (0 if kind == "reset" else 1)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(server: LocalServer, status: int):
    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=status, text="POS is malformed")

    server.route("GET", "/bad", bad)
    async with VOClient(config()) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.transport.request("GET", server.url("/bad"))
    assert caught.value.status == status
    assert caught.value.attempts == 1
    assert "POS is malformed" in caught.value.body
    assert len(server.hits_for("/bad")) == 1


async def test_the_final_error_says_what_was_tried(server: LocalServer):
    async def down(request: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    server.route("GET", "/down", down)
    async with VOClient(config()) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.transport.request("GET", server.url("/down"))
        assert client.stats[f"http://127.0.0.1:{server.port}"].failures == 1
    error = caught.value
    assert error.attempts == 3 and error.status == 503 and error.retryable
    text = str(error)
    assert "503" in text and server.url("/down") in text and "after 3 attempts" in text
    assert len(server.hits_for("/down")) == 3


async def test_connection_refused_is_a_connect_error_not_retried():
    # Nothing listens on 127.0.0.1:9: waiting won't change that.
    async with VOClient(config()) as client:
        with pytest.raises(ConnectError) as caught:
            await client.transport.request("GET", "http://127.0.0.1:9/nothing-listens")
    assert caught.value.attempts == 1 and not caught.value.retryable
    assert "refused" in str(caught.value) and "127.0.0.1:9" in str(caught.value)


async def test_a_name_that_does_not_resolve_is_not_retried():
    # .invalid never resolves (RFC 2606); the resolver answers at once, locally.
    async with VOClient(config()) as client:
        with pytest.raises(ConnectError) as caught:
            await client.transport.request("GET", "http://no-such-host.invalid/x")
    assert caught.value.attempts == 1 and not caught.value.retryable
    assert "no-such-host.invalid" in str(caught.value) and "not found" in str(caught.value)


async def test_the_deadline_holds(server: LocalServer):
    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500)

    server.route("GET", "/e", error)
    policy = RetryPolicy(attempts=1000, initial=0.05, maximum=0.05, jitter=0.0, deadline=0.5)
    async with VOClient(config(retry=policy)) as client:
        started = time.monotonic()
        with pytest.raises(HTTPStatusError):
            await client.transport.request("GET", server.url("/e"))
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert 3 <= len(server.hits_for("/e")) < 30


async def test_a_stalled_answer_hits_the_read_timeout(server: LocalServer):
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    server.route("GET", "/stall", stall)
    cfg = config(
        timeouts=Timeouts(connect=5, read=0.2, total=30),
        retry=RetryPolicy(attempts=2, initial=0.01, jitter=0),
    )
    async with VOClient(cfg) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            await client.transport.request("GET", server.url("/stall"))
    assert time.monotonic() - started < 2


async def test_an_answer_over_its_cap_is_refused_unread(server: LocalServer):
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100_000)

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked, no length announced
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b"y" * 10_000)
        return response

    server.route("GET", "/big", big)
    server.route("GET", "/endless", endless)
    async with VOClient(config(max_answer_bytes=50_000)) as client:
        with pytest.raises(TooLargeError, match="cap"):
            await client.transport.request("GET", server.url("/big"))
        with pytest.raises(TooLargeError):
            await client.transport.request("GET", server.url("/endless"))
    assert len(server.hits_for("/big")) == 1


async def test_redirect_loops_are_redirect_errors(server: LocalServer):
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    server.route("GET", "/loop", loop)
    async with VOClient(config(max_redirects=5)) as client:
        with pytest.raises(RedirectError):
            await client.transport.request("GET", server.url("/loop"))


async def test_non_idempotent_requests_are_not_retried_after_reaching_the_server(
    server: LocalServer,
):
    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def throttled(request: web.Request) -> web.Response:
        if len(server.hits_for("/busy")) == 1:
            return web.Response(status=429, headers={"Retry-After": "0"})
        return web.Response(status=303, headers={"Location": "/job/1"})

    server.route("POST", "/create", error)
    server.route("POST", "/busy", throttled)
    async with VOClient(config()) as client:
        with pytest.raises(HTTPStatusError):
            await client.transport.request(
                "POST", server.url("/create"), data={"a": "b"}, idempotent=False
            )
        # A 429 means the server refused: creating again is safe.
        answer = await client.transport.request(
            "POST", server.url("/busy"), idempotent=False, allow_redirects=False, ok=(303,)
        )
    assert len(server.hits_for("/create")) == 1
    assert answer.status == 303 and len(server.hits_for("/busy")) == 2


# --- cancellation ------------------------------------------------------------------


async def test_cancelling_a_request_leaves_nothing_behind(server: LocalServer):
    arrived = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(10)
        return web.Response()

    server.route("GET", "/stall", stall)
    async with VOClient(config()) as client:
        before = asyncio.all_tasks()
        task = asyncio.create_task(client.transport.request("GET", server.url("/stall")))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = client.stats[f"http://127.0.0.1:{server.port}"]
        assert stats.in_flight == 0
        connector = client.transport.session.connector
        assert connector is not None
        await asyncio.sleep(0.1)
        assert not connector._acquired  # no connection held
        assert asyncio.all_tasks() <= before | {asyncio.current_task()}
    for _ in range(50):
        if server.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert server.in_flight == 0


async def test_cancelling_a_download_leaves_no_part_file(server: LocalServer, tmp_path: Path):
    started = asyncio.Event()

    async def slow_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(10_000_000)})
        await response.prepare(request)
        await response.write(b"z" * 100_000)
        started.set()
        await asyncio.sleep(10)
        return response

    server.route("GET", "/image.fits", slow_body)
    out = tmp_path / "out"
    async with VOClient(config(chunk_bytes=4096)) as client:
        task = asyncio.create_task(client.download(server.url("/image.fits"), out))
        await started.wait()
        await asyncio.sleep(0.1)
        assert (out / "image.fits.part").exists()  # it was really writing
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert list(out.iterdir()) == []


async def test_truncated_download_never_becomes_a_final_file(server: LocalServer, tmp_path: Path):
    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "5000"})
        await response.prepare(request)
        await response.write(b"a" * 1000)
        request.transport.close()
        return response

    server.route("GET", "/cut.fits", short)
    async with VOClient(config()) as client:
        with pytest.raises((PayloadError, ConnectError)):
            await client.download(server.url("/cut.fits"), tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert len(server.hits_for("/cut.fits")) == 3


async def test_retry_after_on_a_500_delays_that_request(server: LocalServer):
    async def once(request: web.Request) -> web.Response:
        if len(server.hits_for("/r")) == 1:
            return web.Response(status=500, headers={"Retry-After": "1"})
        return web.Response(text="ok")

    server.route("GET", "/r", once)
    async with VOClient(config()) as client:
        answer = await client.transport.request("GET", server.url("/r"))
        stats = client.stats[f"http://127.0.0.1:{server.port}"]
    hits = server.hits_for("/r")
    assert answer.body == b"ok" and len(hits) == 2
    assert hits[1].at - hits[0].at >= 0.95
    assert stats.pauses == 0  # a 500 delays the request, it doesn't pause the host
    assert stats.responses == 2 and stats.mean_latency is not None


async def test_downloads_keep_the_deadline(server: LocalServer, tmp_path: Path):
    async def error(request: web.Request) -> web.Response:
        return web.Response(status=503)

    server.route("GET", "/img.fits", error)
    policy = RetryPolicy(attempts=100, initial=0.05, maximum=0.05, jitter=0.0, deadline=0.5)
    async with VOClient(config(retry=policy)) as client:
        started = time.monotonic()
        with pytest.raises(HTTPStatusError):
            await client.download(server.url("/img.fits"), tmp_path)
    assert time.monotonic() - started < 1.5
    assert len(server.hits_for("/img.fits")) < 20
