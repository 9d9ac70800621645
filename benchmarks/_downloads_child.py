"""The voharvest side of ``python -m benchmarks.downloads``: one contender in its own process.

``python -m benchmarks._downloads_child MODE --spec FILE --dir DIR [options]``, MODE
one of ``download`` (``VOClient.download`` under a queue of workers), ``harvest``
(``voharvest.harvest`` with ``download_to``), ``searches`` (the same harvest without
downloads) and ``discard`` (aiohttp alone, the bytes dropped). It times the
transfer phase itself (client open to close; interpreter start and imports are
reported apart) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch with voharvest as ``mode`` says, print one JSON line of inner timings."""
    began = time.perf_counter()
    parser = argparse.ArgumentParser(prog="python -m benchmarks._downloads_child")
    parser.add_argument("mode", choices=("download", "harvest", "searches", "discard"))
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--chunk-bytes", type=int, default=None)
    parser.add_argument("--file-workers", type=int, default=None)
    parser.add_argument("--no-fsync", action="store_true", help="diagnosis: no fsync per file")
    parser.add_argument("--profile", type=Path, default=None, help="diagnosis: cProfile to FILE")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())

    import asyncio
    import resource

    import voharvest
    from voharvest import ClientConfig, HostPolicy, VOClient

    imported = time.perf_counter()
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra: dict[str, Any] = {}
    if args.no_fsync:
        if "fsync" in {f.name for f in dataclasses.fields(ClientConfig)}:
            extra["fsync"] = False
        else:  # a voharvest without the setting: os.fsync made a no-op in this child only
            os.fsync = lambda fd: None
    if args.chunk_bytes is not None:
        extra["chunk_bytes"] = args.chunk_bytes
    if args.file_workers is not None:
        extra["file_workers"] = args.file_workers
    config = ClientConfig(host=HostPolicy(rate=math.inf, concurrency=args.workers), **extra)
    failures: list[str] = []

    async def download_all(client: VOClient) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=args.workers * 2)

        async def worker() -> None:
            while (url := await queue.get()) is not None:
                try:
                    await client.download(url, args.dir, expected_format="image/fits")
                except voharvest.VOHarvestError as exc:
                    failures.append(f"{url}: {exc}")

        async with asyncio.TaskGroup() as group:
            for _ in range(args.workers):
                group.create_task(worker())
            for url in spec["urls"]:
                await queue.put(url)
            for _ in range(args.workers):
                await queue.put(None)

    async def discard_all() -> None:
        """The ceiling of an asyncio client here: aiohttp alone, 16 streams, bytes dropped."""
        import aiohttp

        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=args.workers * 2)
        received = 0

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal received
            while (url := await queue.get()) is not None:
                async with session.get(url) as response:
                    async for piece in response.content.iter_chunked(1 << 20):
                        received += len(piece)

        connector = aiohttp.TCPConnector(limit=args.workers)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with asyncio.TaskGroup() as group:
                for _ in range(args.workers):
                    group.create_task(worker(session))
                for url in spec["urls"]:
                    await queue.put(url)
                for _ in range(args.workers):
                    await queue.put(None)
        if received != spec["bytes"]:
            failures.append(f"received {received} bytes, {spec['bytes']} expected")

    async def harvest_all(client: VOClient) -> None:
        run = voharvest.harvest(
            client,
            spec["services"],
            [tuple(t) for t in spec["targets"]],
            size=spec["size"],
            search_format="image/fits",
            download_to=args.dir if args.mode == "harvest" else None,
            downloads=args.workers,
        )
        async for item in run:
            if not item.ok:
                failures.append(f"{item.kind} {item.target}: {item.error}")

    loop_cpu = 0.0

    async def main() -> tuple[float, float]:
        nonlocal loop_cpu
        cpu0, loop0 = _cpu_self(), time.thread_time()  # the loop runs in this thread
        start = time.perf_counter()
        if args.mode == "discard":
            await discard_all()
        else:
            async with VOClient(config) as client:
                if args.mode == "download":
                    await download_all(client)
                else:
                    await harvest_all(client)
        loop_cpu = time.thread_time() - loop0
        return time.perf_counter() - start, _cpu_self() - cpu0

    if args.profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        wall, cpu = asyncio.run(main())
        profiler.disable()
        profiler.dump_stats(args.profile)
    else:
        wall, cpu = asyncio.run(main())
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "loop_cpu": loop_cpu,
                "startup": imported - began,
                "rss_after_imports_kib": rss_after_imports,
                "failures": failures[:10],
                "failed": len(failures),
            }
        ),
        flush=True,
    )
    return 0 if not failures else 1


def _cpu_self() -> float:
    """CPU seconds of this process and of its children that ended (a process pool's)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    sys.exit(main())
