"""The ledger in the Dask scheduler: a scheduler plugin with a few RPC handlers.

Registered once per cluster by the driver (``client.register_plugin``; it is
idempotent, so a second harvest on the same cluster keeps the same ledger).
The scheduler process must be able to import voharvest, as the workers must.

Handlers (``await rpc(scheduler).<name>(**kwargs)``):

- ``voharvest_acquire(origin, concurrency, rate, holder, worker)`` → ``{"lease",
  "start", "paused_until"}``, answered just before the slot starts;
- ``voharvest_reslot(origin, lease, holder)`` → the same, for a missed slot;
- ``voharvest_release(lease)``; ``voharvest_release_all(holder)``;
- ``voharvest_pause(origin, until)``; ``voharvest_refresh(holder, worker)``;
- ``voharvest_report()`` → per-origin counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import SchedulerPlugin

from voharvest.dask._ledger import LeaseLost, Ledger

if TYPE_CHECKING:
    from distributed import Scheduler

__all__ = ["PLUGIN_NAME", "Coordinator"]

logger = logging.getLogger("voharvest.dask")

PLUGIN_NAME = "voharvest-coordinator"


class Coordinator(SchedulerPlugin):
    """Holds the cluster's :class:`~voharvest.dask._ledger.Ledger` in the scheduler."""

    idempotent = True
    name = PLUGIN_NAME

    def __init__(self, *, lead: float = 0.05, lease_timeout: float = 60.0) -> None:
        self.lead = lead
        self.lease_timeout = lease_timeout
        self.ledger: Ledger | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, scheduler: Scheduler) -> None:
        self.ledger = Ledger(lead=self.lead, lease_timeout=self.lease_timeout)
        scheduler.handlers.update(
            {
                "voharvest_acquire": self._acquire,
                "voharvest_reslot": self._reslot,
                "voharvest_release": self._release,
                "voharvest_release_all": self._release_all,
                "voharvest_pause": self._pause,
                "voharvest_refresh": self._refresh,
                "voharvest_report": self._report,
            }
        )
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        if self.ledger is not None:
            dropped = self.ledger.drop_worker(worker)
            if dropped:
                logger.info("voharvest: %d leases of the lost worker %s released", dropped, worker)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.lease_timeout / 4))
            if self.ledger is not None:
                self.ledger.expire()

    def _ledger(self) -> Ledger:
        if self.ledger is None:  # pragma: no cover - handlers exist only after start()
            raise RuntimeError("the voharvest coordinator has not started")
        return self.ledger

    async def _acquire(
        self, origin: str, concurrency: int, rate: float, holder: str, worker: str = ""
    ) -> dict[str, Any]:
        try:
            return await self._ledger().acquire(origin, concurrency, rate, holder, worker)
        except LeaseLost as exc:
            return {"lost": str(exc)}

    async def _reslot(self, origin: str, lease: int, holder: str = "") -> dict[str, Any]:
        try:
            return await self._ledger().reslot(origin, lease, holder)
        except LeaseLost as exc:
            return {"lost": str(exc)}

    def _release(self, lease: int) -> None:
        self._ledger().release_lease(lease)

    def _release_all(self, holder: str) -> int:
        return self._ledger().drop_holder(holder)

    def _pause(self, origin: str, until: float) -> None:
        self._ledger().pause(origin, until)

    def _refresh(self, holder: str, worker: str = "") -> None:
        self._ledger().touch(holder, worker)

    def _report(self) -> dict[str, dict[str, Any]]:
        return self._ledger().report()
