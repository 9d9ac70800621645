"""Progress while a harvest runs, and the summary at its end."""

from __future__ import annotations

import ipaddress
import math
import sys
import time
from typing import IO, Any
from urllib.parse import urlsplit

from .._limiter import HostStats
from ..harvesting import HarvestItem

__all__ = ["Progress", "format_bytes", "host_summary", "origin_sort_key"]


def format_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


class Progress:
    """Bars on a terminal (tqdm), a plain line every few seconds when piped.

    ``searches_total``: the number of searches when it is known (targets times
    services); the bars then show a percentage and the time left, and the
    downloads bar's total grows with the records the searches found.
    """

    def __init__(
        self,
        *,
        stream: IO[str] | None = None,
        bars: bool | None = None,
        searches_total: int | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.searches_total = searches_total
        self._started = time.monotonic()
        self._closed = False
        self.searches_ok = self.searches_failed = 0
        self.downloads_ok = self.downloads_failed = self.skipped = 0
        self.records = 0
        self.bytes = 0
        self._last_line = time.monotonic()
        self._tqdm: dict[str, Any] = {}
        if self.bars:
            from tqdm import tqdm

            self._tqdm = {
                "search": tqdm(
                    desc="searches",
                    unit="search",
                    total=searches_total,
                    file=self.stream,
                    position=0,
                ),
                "download": tqdm(
                    desc="downloads",
                    unit="file",
                    total=0 if searches_total is not None else None,
                    file=self.stream,
                    position=1,
                ),
                "bytes": tqdm(desc="data", unit="B", unit_scale=True, file=self.stream, position=2),
            }

    def update(self, item: HarvestItem, retries: int) -> None:
        if item.kind == "search":
            if item.ok:
                self.searches_ok += 1
                self.records += item.records
            else:
                self.searches_failed += 1
        elif item.ok:
            self.downloads_ok += 1
            self.skipped += int(item.found_on_disk or item.nothing_to_cut)
            self.bytes += item.bytes
        else:
            self.downloads_failed += 1
        if self.bars:
            if item.kind == "search" and self.searches_total is not None:
                downloads = self._tqdm["download"]
                downloads.total = max(self.records, downloads.n)
                downloads.refresh()
            bar = self._tqdm[item.kind]
            bar.update(1)
            failed = self.searches_failed if item.kind == "search" else self.downloads_failed
            bar.set_postfix(failed=failed, retries=retries, refresh=False)
            if item.kind == "download" and item.ok:
                self._tqdm["bytes"].update(item.bytes)
        elif time.monotonic() - self._last_line >= 5:
            self.line(retries)

    def _share(self) -> str:
        """ " (45 %, about 12 s left)" when the number of searches is known."""
        total = self.searches_total
        if total is None:
            return ""
        if total == 0:
            return " of 0 (100%)"
        done = self.searches_ok + self.searches_failed
        if self._closed and done >= total:
            return f" of {total} (100%)"  # files found twice are fetched once: done is done
        # Searches and downloads both count: one unit per search and per record found.
        work = total + max(self.records, self.downloads_ok + self.downloads_failed)
        finished = done + self.downloads_ok + self.downloads_failed
        share = min(1.0, finished / work) if work else 1.0
        elapsed = time.monotonic() - self._started
        left = elapsed * (1 - share) / share if share > 0 else None
        return f" of {total} ({share:.0%}" + (f", about {left:.0f} s left)" if left else ")")

    def line(self, retries: int) -> None:
        self._last_line = time.monotonic()
        print(
            f"searches {self.searches_ok} ok{self._share()}, {self.searches_failed} failed; "
            f"records {self.records}; downloads {self.downloads_ok} ok "
            f"({self.skipped} already there), {self.downloads_failed} failed; "
            f"{format_bytes(self.bytes)}; retries {retries}",
            file=self.stream,
            flush=True,
        )

    def close(self, retries: int) -> None:
        self._closed = True
        if self._tqdm and self.searches_total is not None:
            downloads = self._tqdm["download"]
            downloads.total = downloads.n  # records found twice were fetched once
            downloads.refresh()
        for bar in self._tqdm.values():
            bar.close()
        self.line(retries)


def origin_sort_key(origin: str) -> tuple[int, Any, str, int]:
    """Sort key for an origin or URL: IP addresses as numbers (127.0.0.2 before 127.0.0.10)."""
    parts = urlsplit(origin if "//" in origin else f"//{origin}")
    host = parts.hostname or ""
    try:
        port = parts.port or 0
    except ValueError:
        port = 0
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return (1, host, parts.scheme, port)
    return (0, (address.version, int(address)), parts.scheme, port)


def host_summary(stats: dict[str, HostStats]) -> str:
    """A table of what each host saw: requests, retries, 429/503, failures, bytes, latency,
    and the rate (requests/s) its adaptive limiter ended at."""
    header = ("host", "requests", "retries", "429/503", "failures", "bytes", "mean latency", "rate")
    rows = [header]
    for origin, one in sorted(stats.items(), key=lambda item: origin_sort_key(item[0])):
        latency = one.mean_latency
        rows.append(
            (
                origin,
                str(one.requests),
                str(one.retries),
                str(one.throttled),
                str(one.failures),
                format_bytes(one.bytes),
                f"{latency * 1000:.0f} ms" if latency is not None else "-",
                f"{one.rate:.3g}/s" if math.isfinite(one.rate) else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )
