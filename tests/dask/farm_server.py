"""A VOFarm in a process of its own that answers questions while it runs (for the Dask tests).

``python -m tests.dask.farm_server '<HostConfig fields as JSON>' HOSTS DURATION`` prints
one JSON line with the hosts' URLs once they listen, then reads commands from
stdin, one a line, and answers each with one JSON line:

- ``counters``: per host, ``FarmCounters.to_dict()`` plus ``completed`` and
  ``fetches`` (image path -> count);
- ``stop`` (or the end of stdin, or DURATION seconds): prints the counters
  one last time and exits.

The farm runs apart from the test process, whose GIL the Dask scheduler of a
LocalCluster shares: a stalled farm would count well-spaced requests as a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from voharvest.testing import FarmAuth, HostConfig, VOFarm


def counters(farm: VOFarm) -> dict[str, Any]:
    return {
        str(index): {
            **c.to_dict(),
            "completed": dict(c.completed_image_fetches),
            "fetches": dict(c.image_fetches),
        }
        for index, c in farm.counters.items()
    }


async def main(config: dict[str, Any], hosts: int, duration: float) -> None:
    if "formats" in config:
        config["formats"] = tuple(config["formats"])
    if "auth" in config:
        config["auth"] = FarmAuth(**config["auth"])
    async with VOFarm(hosts=hosts, config=HostConfig(**config), seed=0) as farm:
        print(json.dumps({"event": "ready", **farm.describe()}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                while line := (await reader.readline()).decode().strip():
                    if line == "stop":
                        break
                    if line == "counters":
                        print(json.dumps(counters(farm)), flush=True)
        print(json.dumps(counters(farm)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
