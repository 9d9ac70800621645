"""The worker's side of the cluster's politeness: a :class:`~voharvest._limiter.HostGate`.

A :class:`ClusterGate` belongs to one partition run (one event loop, one
``VOClient``). Each request to a host takes a place and a start slot from the
scheduler's ledger (``_coordinator``) and gives the place back when it ends.
One request per host at a time asks the scheduler (a small pump per host), so a
partition holds a handful of connections to the scheduler, not one per request
in flight. A Retry-After is passed on at once (in the background): the ledger
moves every slot it has not handed out past the pause.

A slot reached too late (a busy event loop woke the request more than a
quarter of an interval after it) is not used: another is asked for, so requests of
different workers never bunch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from distributed.core import rpc

from voharvest._config import HostPolicy
from voharvest._exceptions import ConnectError

__all__ = ["ClusterGate", "GateStats"]

logger = logging.getLogger("voharvest.dask")

_RPC_ERRORS = (OSError, EnvironmentError, asyncio.TimeoutError, RuntimeError)


@dataclass
class GateStats:
    """What one gate did: places taken, slots missed and asked again, pauses passed on."""

    acquired: int = 0
    reslots: int = 0
    pauses_sent: int = 0
    waited_seconds: float = 0.0
    per_origin: dict[str, int] = field(default_factory=dict)


class _Pump:
    """One host's queue of requests waiting for the scheduler, served one RPC at a time."""

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[dict[str, Any]]] = deque()
        self.task: asyncio.Task[None] | None = None


class ClusterGate:
    """Places, start slots and pauses shared with the whole cluster; see the module doc.

    Use it as ``async with ClusterGate(scheduler_address, worker=...) as gate:``
    and put it in the client's configuration (``ClientConfig(gate=gate)``).
    """

    def __init__(
        self,
        scheduler_address: str,
        *,
        worker: str = "",
        connection_args: Mapping[str, Any] | None = None,
        refresh: float = 10.0,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.worker = worker
        self.holder = f"{worker or 'process'}/{uuid.uuid4().hex[:12]}"
        self.stats = GateStats()
        self._rpc: Any = None
        self._connection_args = dict(connection_args or {})
        self._refresh_every = refresh
        self._refresher: asyncio.Task[None] | None = None
        self._pumps: dict[str, _Pump] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._paused: dict[str, float] = {}

    # --- lifetime -------------------------------------------------------------

    async def __aenter__(self) -> ClusterGate:
        self._rpc = rpc(  # type: ignore[no-untyped-call]
            self.scheduler_address, connection_args=self._connection_args
        )
        await self._call("voharvest_refresh", holder=self.holder, worker=self.worker)
        self._refresher = asyncio.create_task(self._refresh())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        tasks = [t for t in (self._refresher, *(p.task for p in self._pumps.values())) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._background:
            await asyncio.wait(self._background, timeout=10)
        if self._rpc is not None:
            with contextlib.suppress(*_RPC_ERRORS):
                await asyncio.wait_for(self._call("voharvest_release_all", holder=self.holder), 10)
            await self._rpc.close_rpc()
            self._rpc = None

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_every)
            try:
                await self._call("voharvest_refresh", holder=self.holder, worker=self.worker)
            except ConnectError as exc:
                logger.warning("voharvest: the scheduler did not take a refresh: %s", exc)

    async def _call(self, op: str, **kwargs: Any) -> Any:
        if self._rpc is None:
            raise ConnectError("the cluster gate is closed", url=self.scheduler_address)
        try:
            return await getattr(self._rpc, op)(**kwargs)
        except _RPC_ERRORS as exc:
            raise ConnectError(
                f"the cluster's politeness ledger (scheduler {self.scheduler_address}) "
                f"did not answer {op}: {type(exc).__name__}: {exc}",
                url=self.scheduler_address,
                retryable=True,
            ) from exc

    def _later(self, op: str, **kwargs: Any) -> None:
        """Send without waiting for the answer (releases and pauses)."""

        async def send() -> None:
            try:
                await self._call(op, **kwargs)
            except ConnectError as exc:
                logger.warning("voharvest: %s", exc)

        task = asyncio.ensure_future(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- HostGate -------------------------------------------------------------

    def pause(self, origin: str, seconds: float) -> None:
        until = time.time() + seconds
        if until > self._paused.get(origin, -math.inf):
            self._paused[origin] = until
        self.stats.pauses_sent += 1
        self._later("voharvest_pause", origin=origin, until=until)

    @asynccontextmanager
    async def hold(self, origin: str, policy: HostPolicy) -> AsyncIterator[None]:
        asked = time.monotonic()
        grant = await self._acquire(origin, policy)
        lease = grant["lease"]
        try:
            interval = 0.0 if math.isinf(policy.rate) else 1.0 / policy.rate
            tolerance = min(interval / 4, 0.25)
            while True:
                start = float(grant["start"])
                until = max(start, self._paused.get(origin, -math.inf))
                if until > time.time():
                    await asyncio.sleep(until - time.time())
                if until > start or (interval > 0 and time.time() - start > tolerance):
                    # Paused meanwhile, or woken too late: this slot is not safe to use.
                    self.stats.reslots += 1
                    grant = await self._checked(
                        "voharvest_reslot", origin=origin, lease=lease, holder=self.holder
                    )
                    continue
                break
            self.stats.acquired += 1
            self.stats.waited_seconds += time.monotonic() - asked
            self.stats.per_origin[origin] = self.stats.per_origin.get(origin, 0) + 1
            yield
        finally:
            self._later("voharvest_release", lease=lease)

    async def _checked(self, op: str, **kwargs: Any) -> dict[str, Any]:
        answer = await self._call(op, **kwargs)
        if not isinstance(answer, dict) or "lost" in answer:
            lost = answer.get("lost") if isinstance(answer, dict) else answer
            raise ConnectError(
                f"the cluster ledger dropped this request's place: {lost}",
                url=kwargs.get("origin", self.scheduler_address),
                retryable=True,
            )
        return answer

    async def _acquire(self, origin: str, policy: HostPolicy) -> dict[str, Any]:
        pump = self._pumps.get(origin)
        if pump is None:
            pump = self._pumps[origin] = _Pump()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pump.waiting.append(future)
        if pump.task is None or pump.task.done():
            pump.task = asyncio.create_task(self._pump(origin, policy, pump))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._later("voharvest_release", lease=future.result()["lease"])
            raise

    async def _pump(self, origin: str, policy: HostPolicy, pump: _Pump) -> None:
        while pump.waiting:
            if pump.waiting[0].done():  # its request was cancelled
                pump.waiting.popleft()
                continue
            try:
                grant = await self._checked(
                    "voharvest_acquire",
                    origin=origin,
                    concurrency=policy.concurrency,
                    rate=policy.rate,
                    holder=self.holder,
                    worker=self.worker,
                )
            except ConnectError as exc:
                while pump.waiting:
                    waiter = pump.waiting.popleft()
                    if not waiter.done():
                        waiter.set_exception(exc)
                return
            while pump.waiting and pump.waiting[0].done():
                pump.waiting.popleft()
            if pump.waiting:
                pump.waiting.popleft().set_result(grant)
            else:
                self._later("voharvest_release", lease=grant["lease"])
