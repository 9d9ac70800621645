"""VOFarm: simulated VO hosts on loopback, each on its own address.

Host ``i`` listens on ``127.0.0.(i+2)`` on an ephemeral port, so a client sees
different origins and a per-host limit is a real per-host limit. Each host
serves SIA v1 (``/sia``), SIA v2 (``/sia2/query``), a TAP endpoint whose
``/sync`` answers registry queries listing the farm's own services
(``/tap/sync``), and the images those searches point to (``/images/<tile>.fits``
and ``.jpg``), with the latency, rate limit, bandwidth and faults of its
:class:`HostConfig`. Everything a host did is counted in its
:class:`FarmCounters`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType

from .._checks import is_int
from .._exceptions import ParameterError
from ._config import IMAGE_FORMATS, FarmCounters, HostConfig
from ._host import HostServer
from ._sky import Sky, Tile
from ._vo import FarmVO

__all__ = ["FarmHost", "VOFarm"]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT = 5.0


class FarmHost:
    """One simulated host: where it listens, how it behaves, what it counted."""

    def __init__(self, index: int, address: str, config: HostConfig) -> None:
        self.index = index
        self.address = address
        self.port = 0
        self.config = config
        self.counters = FarmCounters()
        #: Answer rows already written, by (protocol, tile, format): a search
        #: answer costs the farm little CPU, so a benchmark measures the client.
        self.rows: dict[tuple[str, str, str], str] = {}

    @property
    def base_url(self) -> str:
        scheme = "https" if self.config.tls is not None else "http"
        return f"{scheme}://{self.address}:{self.port}"

    @property
    def sia1_url(self) -> str:
        """The SIA v1 access URL (with the FORMAT preset, if the host has one)."""
        preset = self.config.sia1_format_preset
        return f"{self.base_url}/sia" + (f"?FORMAT={preset}&" if preset else "")

    @property
    def sia2_url(self) -> str:
        return f"{self.base_url}/sia2/query"

    @property
    def tap_url(self) -> str:
        """The TAP base URL; its ``/sync`` answers registry queries."""
        return f"{self.base_url}/tap"

    @property
    def ivoid(self) -> str:
        return f"ivo://vofarm.test/host{self.index}"

    @property
    def title(self) -> str:
        return self.config.title or f"VOFarm {self.config.waveband} survey host {self.index}"

    def image_url(self, tile: Tile | str, format: str = "image/fits") -> str:
        """The URL of a tile's image on this host."""
        tile_id = tile.id if isinstance(tile, Tile) else tile
        return f"{self.base_url}/images/{tile_id}.{IMAGE_FORMATS[format]}"

    def __repr__(self) -> str:
        return f"<FarmHost {self.index} {self.base_url}>"


class LoopWatch:
    """How late the farm's own event loop runs: a 10 ms ticker notes every stall.

    A farm that shares its CPUs with the clients under test can itself be
    late: requests then wait in the kernel and reach the handlers together
    when the loop runs again, and the token bucket sees a burst the clients
    never sent. Violations right after such a stall are counted apart
    (``FarmCounters.rate_violations_after_stall``), so a benchmark can tell a
    farm that was starved from a client that was impolite.
    """

    TICK = 0.01
    STALL = 0.05  # a tick this late counts as a stall

    def __init__(self) -> None:
        self.max_lag = 0.0
        self.stalls = 0
        self._recent: deque[tuple[float, float]] = deque(maxlen=256)  # (ended, length)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.TICK)
            now = time.monotonic()
            lag = now - before - self.TICK
            self.max_lag = max(self.max_lag, lag)
            if lag >= self.STALL:
                self.stalls += 1
                self._recent.append((now, lag))

    def stalled_recently(self, now: float, *, at_least: float, window: float = 1.0) -> bool:
        """Whether the loop stalled for ``at_least`` seconds within ``window`` before ``now``."""
        return any(
            now - window <= ended <= now + self.TICK and length >= at_least
            for ended, length in self._recent
        )

    def to_dict(self) -> dict[str, float | int]:
        return {"max_lag": round(self.max_lag, 4), "stalls": self.stalls}


def _address(index: int) -> str:
    number = index + 2
    return f"127.0.{number // 256}.{number % 256}"


class VOFarm:
    """Simulated VO hosts on loopback; an async context manager.

    ``hosts`` hosts, all behaving as ``config`` except those given in
    ``per_host`` (index to :class:`HostConfig`). ``seed`` fixes the sky and
    the fault draws. ``addresses`` overrides where hosts listen (default
    ``127.0.0.2``, ``127.0.0.3``, ...; one ephemeral port each)::

        async with VOFarm(hosts=3, config=HostConfig(latency=0.05)) as farm:
            farm.registry_url, farm.hosts[1].sia2_url, farm.counters[1].requests
    """

    def __init__(
        self,
        hosts: int = 2,
        config: HostConfig | None = None,
        per_host: Mapping[int, HostConfig] | None = None,
        seed: int = 0,
        addresses: Sequence[str] | None = None,
        vo: FarmVO | None = None,
    ) -> None:
        if not is_int(hosts) or not 1 <= hosts <= 60000:
            raise ParameterError(f"VOFarm: hosts must be an integer in 1..60000, got {hosts!r}")
        config = config if config is not None else HostConfig()
        if not isinstance(config, HostConfig):
            raise ParameterError(f"VOFarm: config must be a HostConfig, got {config!r}")
        per_host = dict(per_host or {})
        for index, override in per_host.items():
            if not (isinstance(index, int) and 0 <= index < hosts):
                raise ParameterError(
                    f"VOFarm: per_host index {index!r} is not a host (0..{hosts - 1})"
                )
            if not isinstance(override, HostConfig):
                raise ParameterError(f"VOFarm: per_host[{index}] must be a HostConfig")
        if addresses is not None and len(addresses) != hosts:
            raise ParameterError(f"VOFarm: {len(addresses)} addresses for {hosts} hosts")
        if vo is not None and not isinstance(vo, FarmVO):
            raise ParameterError(f"VOFarm: vo must be a FarmVO, got {vo!r}")
        if vo is not None and vo.hosts > hosts:
            raise ParameterError(f"VOFarm: this FarmVO needs {vo.hosts} hosts, got {hosts}")
        #: What the hosts serve in a VO for global discovery (docs/testing.md), or None.
        self.vo = vo
        if vo is not None:
            vo.prepare()
        self.seed = seed
        self.sky = Sky(seed)
        self.hosts = [
            FarmHost(
                index,
                addresses[index] if addresses is not None else _address(index),
                per_host.get(index, config),
            )
            for index in range(hosts)
        ]
        self._servers = [HostServer(self, host) for host in self.hosts]
        self._closing: asyncio.Event | None = None
        #: The farm's own loop lag (see :class:`LoopWatch`), watched while it runs.
        self.watch = LoopWatch()
        self._started = False

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> VOFarm:
        if self._started:
            raise RuntimeError("this VOFarm was already started")
        self._started = True
        self._closing = asyncio.Event()
        try:
            await asyncio.gather(*(server.start() for server in self._servers))
        except BaseException:
            await self.stop()
            raise
        self.watch.start()
        return self

    async def stop(self) -> None:
        """Stop every host; requests still running are cut within a few seconds."""
        if self._closing is not None:
            self._closing.set()
        await self.watch.stop()
        stopping = [asyncio.ensure_future(server.stop()) for server in self._servers]
        if not stopping:
            return
        done, pending = await asyncio.wait(stopping, timeout=_STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
            logger.warning("VOFarm: %d hosts did not stop in time", len(pending))
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.warning("VOFarm: a host failed to stop: %r", task.exception())

    async def __aenter__(self) -> VOFarm:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def closing(self) -> bool:
        return self._closing is not None and self._closing.is_set()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the farm stops."""
        if seconds <= 0:
            return
        if self._closing is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    # --- what tests look at ---------------------------------------------------------

    @property
    def registry_url(self) -> str:
        """TAP base URL of host 0: its ``/sync`` answers registry queries."""
        return self.hosts[0].tap_url

    @property
    def counters(self) -> dict[int, FarmCounters]:
        """Host index to its counters (live objects)."""
        return {host.index: host.counters for host in self.hosts}

    def reset_counters(self) -> None:
        for host in self.hosts:
            host.counters.reset()

    def totals(self) -> FarmCounters:
        """The counters of all hosts added up (``max_in_flight``: the largest of any host)."""
        total = FarmCounters()
        for host in self.hosts:
            c = host.counters
            total.requests += c.requests
            total.bytes_sent += c.bytes_sent
            total.faults.update(c.faults)
            total.rate_violations += c.rate_violations
            total.rate_violations_after_stall += c.rate_violations_after_stall
            total.in_flight += c.in_flight
            total.max_in_flight = max(total.max_in_flight, c.max_in_flight)
            total.searches += c.searches
            total.image_fetches.update(c.image_fetches)
            total.completed_image_fetches.update(c.completed_image_fetches)
            total.range_requests += c.range_requests
            total.partial_responses += c.partial_responses
            total.statuses.update(c.statuses)
        return total

    def host_of(self, url: str) -> FarmHost:
        """The host a URL of this farm points to."""
        for host in self.hosts:
            if url.startswith(host.base_url + "/") or url == host.base_url:
                return host
        raise LookupError(f"{url} is not a URL of this farm")

    def describe(self) -> dict[str, object]:
        """Where everything is, as JSON-ready values."""
        described: dict[str, object] = {
            "registry_url": self.registry_url,
            "hosts": [
                {
                    "index": host.index,
                    "base_url": host.base_url,
                    "sia1_url": host.sia1_url,
                    "sia2_url": host.sia2_url,
                    "tap_url": host.tap_url,
                }
                for host in self.hosts
            ],
        }
        if self.vo is not None:
            described["services"] = [
                {"ivoid": s.ivoid, "kinds": list(s.kinds), "host": s.host, "served_by": s.served_by}
                for s in self.vo.services
            ]
        return described
