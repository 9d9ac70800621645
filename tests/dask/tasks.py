"""Task functions the Dask tests send to workers (a module the workers can import)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from voharvest import ClientConfig, HostPolicy, RetryPolicy, VOClient, VOHarvestError
from voharvest.dask import ClusterGate


def requests_through_the_gate(url: str, count: int, rate: float, gated: bool) -> list[str]:
    """``count`` GETs of ``url`` from this worker, 2 at a time, politely; their outcomes."""
    from distributed import get_worker

    worker = get_worker()

    async def main() -> list[str]:
        outcomes: list[str] = []
        gate: Any = (
            ClusterGate(worker.scheduler.address, worker=worker.address)
            if gated
            else contextlib.nullcontext()
        )
        async with gate:
            config = ClientConfig(
                host=HostPolicy(rate=rate, concurrency=2),
                retry=RetryPolicy(attempts=3, initial=0.1, jitter=0.0),
                gate=gate if gated else None,
            )
            async with VOClient(config) as client:

                async def one() -> None:
                    try:
                        await client.transport.request("GET", url)
                        outcomes.append("ok")
                    except VOHarvestError as exc:
                        outcomes.append(type(exc).__name__)

                await asyncio.gather(*(one() for _ in range(count)))
        return outcomes

    return asyncio.run(main())
