"""Configuration as data: frozen, validated dataclasses.

Every knob has a polite default. Archives ask for a few connections and a
smooth rate per host (NED: 1 query/s, its guidelines for automated queries at
https://nedwww.ipac.caltech.edu/help/guidelines_auto.html; MAST's TESSCut:
fewer than 10 at once); we default to 8 connections at 10 requests/s and take per-host
settings for archives that publish stricter limits; 5 attempts with
jittered exponential backoff; Retry-After honoured up to 5 minutes; connect
30 s, stall 60 s. Override with
:func:`dataclasses.replace`, per host with :attr:`ClientConfig.hosts`::

    config = ClientConfig(
        host=HostPolicy(rate=4, concurrency=4),
        hosts=(("*.stsci.edu", HostPolicy(rate=2, concurrency=2)),),
    )
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._auth import Credentials
from ._checks import count, http_origin, http_url, is_number, positive
from ._exceptions import ParameterError
from .protocol.regtap import RegistryFeatures

if TYPE_CHECKING:
    from ._limiter import HostGate

__all__ = [
    "ClientConfig",
    "HostPolicy",
    "RegistryEndpoint",
    "RetryPolicy",
    "Timeouts",
    "origin_of",
]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Seconds. ``read`` is the stall timeout: no byte for that long fails the attempt.

    ``total`` caps a whole metadata request (registry, search, TAP sync, job
    polls); downloads have no total cap, only ``connect`` and ``read``.
    """

    connect: float = 30.0
    read: float = 60.0
    total: float = 300.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            positive(f"Timeouts.{name}", getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How transient failures are retried.

    ``attempts`` in all (1 = no retry); waits grow as ``initial * 2**n`` up to
    ``maximum`` plus up to ``jitter`` seconds at random; nothing is retried once
    ``deadline`` seconds have passed since the first attempt. A Retry-After
    from the server (seconds or HTTP date) is honoured up to ``retry_after_cap``
    and pauses the whole host. ``statuses`` are the HTTP statuses retried.
    """

    attempts: int = 5
    initial: float = 1.0
    maximum: float = 60.0
    jitter: float = 1.0
    deadline: float = 900.0
    retry_after_cap: float = 300.0
    statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

    def __post_init__(self) -> None:
        count("RetryPolicy.attempts", self.attempts)
        positive("RetryPolicy.initial", self.initial)
        positive("RetryPolicy.maximum", self.maximum)
        positive("RetryPolicy.deadline", self.deadline, allow_inf=True)
        positive("RetryPolicy.retry_after_cap", self.retry_after_cap)
        if not (is_number(self.jitter) and 0 <= self.jitter < math.inf):
            raise ParameterError(f"RetryPolicy.jitter: expected >= 0, got {self.jitter!r}")
        if not all(isinstance(s, int) and 400 <= s <= 599 for s in self.statuses):
            raise ParameterError(
                f"RetryPolicy.statuses: expected HTTP error codes, got {self.statuses!r}"
            )

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1-based), without jitter."""
        return float(min(self.maximum, self.initial * 2 ** (retry - 1)))


@dataclass(frozen=True, kw_only=True)
class HostPolicy:
    """Politeness towards one host: a smooth request rate and a cap on connections.

    ``rate`` is requests started per second, evenly spaced (no bursts), the
    spacing measured from when each request's headers were written;
    ``math.inf`` means no rate limit. ``concurrency`` caps requests in flight.

    ``adaptive`` (the default): ``rate`` is where the host's rate starts; it
    goes down when the host throttles (429, 503 without Retry-After) and
    creeps back up while answers are clean, never above ``max_rate`` (None:
    ``rate`` itself, so a host that says nothing is never asked faster than
    ``rate``) nor below ``min_rate``. ``adaptive=False`` keeps ``rate`` fixed.
    """

    rate: float = 10.0
    concurrency: int = 8
    adaptive: bool = True
    max_rate: float | None = None
    min_rate: float = 0.05

    def __post_init__(self) -> None:
        positive("HostPolicy.rate", self.rate, allow_inf=True)
        count("HostPolicy.concurrency", self.concurrency)
        if not isinstance(self.adaptive, bool):
            raise ParameterError(
                f"HostPolicy.adaptive: expected True or False, got {self.adaptive!r}"
            )
        if self.max_rate is not None:
            positive("HostPolicy.max_rate", self.max_rate, allow_inf=True)
        positive("HostPolicy.min_rate", self.min_rate)

    @property
    def ceiling(self) -> float:
        """The highest rate the host is ever asked at (``max_rate``, else ``rate``)."""
        return self.rate if self.max_rate is None else self.max_rate


@dataclass(frozen=True)
class RegistryEndpoint:
    """A RegTAP service and what it can run."""

    url: str
    features: RegistryFeatures = field(default_factory=RegistryFeatures)

    def __post_init__(self) -> None:
        http_url(self.url, "RegistryEndpoint.url")


DEFAULT_REGISTRIES = (
    RegistryEndpoint("http://reg.g-vo.org/tap"),
    RegistryEndpoint("https://vao.stsci.edu/RegTAP/TapService.aspx", RegistryFeatures.minimal()),
)

DEFAULT_SESAME = (
    "https://cds.unistra.fr/cgi-bin/nph-sesame/-ox/SNV",
    "http://vizier.cfa.harvard.edu/viz-bin/nph-sesame/-ox/SNV",
)


#: Environment variables that replace the default registries and name resolvers
#: (URLs separated by blanks or commas, tried in order): how a test or a demo points
#: code that builds a plain ``ClientConfig()`` at local services.
REGISTRY_ENV = "VOHARVEST_REGISTRY"
SESAME_ENV = "VOHARVEST_SESAME"


def _urls_from_env(name: str) -> list[str]:
    return [url for url in os.environ.get(name, "").replace(",", " ").split() if url]


def default_registries() -> tuple[RegistryEndpoint, ...]:
    """``$VOHARVEST_REGISTRY`` if set, else :data:`DEFAULT_REGISTRIES`."""
    urls = _urls_from_env(REGISTRY_ENV)
    return tuple(RegistryEndpoint(url) for url in urls) if urls else DEFAULT_REGISTRIES


def default_sesame() -> tuple[str, ...]:
    """``$VOHARVEST_SESAME`` if set, else :data:`DEFAULT_SESAME`."""
    return tuple(_urls_from_env(SESAME_ENV)) or DEFAULT_SESAME


#: Origins of the ``scheme://authority`` prefixes met (a harvest asks for the same
#: few hosts' origins tens of times per target); emptied when it reaches its bound.
_ORIGINS: dict[str, str] = {}
_ORIGINS_KEPT = 1024
_SCHEME_AUTHORITY = re.compile(r"[^/?#]*://[^/?#]*")


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL (default ports made explicit), lower-cased
    (:func:`~voharvest._checks.http_origin`), remembered by the URL's scheme and
    authority, the only parts it depends on."""
    head = _SCHEME_AUTHORITY.match(url) if isinstance(url, str) else None
    if head is None:
        return http_origin(url)
    prefix = head.group()
    known = _ORIGINS.get(prefix)
    if known is not None:
        return known
    origin = http_origin(url)  # (an error names the whole URL)
    if len(_ORIGINS) >= _ORIGINS_KEPT:
        _ORIGINS.clear()
    _ORIGINS[prefix] = origin
    return origin


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Everything a :class:`~voharvest.VOClient` needs to know.

    - ``host``: the default :class:`HostPolicy`; ``hosts``: ``(pattern, policy)``
      pairs, the first whose shell pattern matches the host name, ``host:port``
      or the origin (``https://host:port``) wins.
    - ``registries``: RegTAP endpoints, tried in order when one fails (default:
      ``$VOHARVEST_REGISTRY`` when set, else GAVO's, then STScI's).
    - ``sesame``: name resolver endpoints, tried in order (default:
      ``$VOHARVEST_SESAME`` when set, else CDS, then the CfA mirror).
    - ``max_answer_bytes``: cap on a metadata answer (search, registry, TAP,
      job documents); ``max_fetch_bytes``: cap on :meth:`VOClient.fetch`.
    - ``offload_bytes``: answers larger than this are parsed in a worker process
      (``parse_workers`` of them), off the event loop. The lean reader takes
      about 30 ms per MiB on one core of a small machine, so the 256 KiB
      default holds each answer parsed on the loop to a few milliseconds.
    - ``turn_budget``: seconds of inline parsing one event-loop turn may hold;
      answers that arrive together past it are parsed in the next turns, so a
      burst of answers never stalls the loop for the sum of their parses.
    - ``chunk_bytes``: size of download writes; ``file_workers``: threads of the
      client's own file executor (writes and fsyncs of concurrent downloads run
      side by side there).
    - ``fsync``: flush each download to the disk before renaming it into place,
      so that even a power cut never leaves a short file under a final name. A
      killed process needs no fsync (the kernel keeps what was written); turn it
      off for speed when power loss is not a concern (it costs about half the
      throughput of many parallel downloads on this machine's disk).
    - ``verify_tls``: certificate verification (turning it off is explicit).
    - ``credentials``: :class:`~voharvest.Credentials`, each bound to the
      origin (and path prefix) it belongs to; see docs/auth.md. Shown masked.
    - ``max_connections``: connections in the pool over all hosts.
    - ``gate``: politeness shared with other processes (a
      :class:`~voharvest._limiter.HostGate`, such as the one ``voharvest.dask``
      gives each partition of a cluster harvest): every request also holds
      the gate's place and start slot for its host. ``None`` (the default):
      the limits hold for this client alone. Not compared, not shown.
    """

    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    host: HostPolicy = field(default_factory=HostPolicy)
    hosts: tuple[tuple[str, HostPolicy], ...] = ()
    registries: tuple[RegistryEndpoint, ...] = field(default_factory=default_registries)
    sesame: tuple[str, ...] = field(default_factory=default_sesame)
    max_answer_bytes: int = 64 * MiB
    max_fetch_bytes: int = 1024 * MiB
    offload_bytes: int = 256 * KiB
    turn_budget: float = 0.002
    parse_workers: int = 2
    chunk_bytes: int = 1 * MiB
    file_workers: int = 16
    fsync: bool = True
    verify_tls: bool = True
    max_connections: int = 256
    max_redirects: int = 10
    user_agent: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    gate: HostGate | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_answer_bytes", "max_fetch_bytes", "chunk_bytes", "max_connections"):
            count(f"ClientConfig.{name}", getattr(self, name))
        for name in ("parse_workers", "file_workers", "offload_bytes", "max_redirects"):
            count(f"ClientConfig.{name}", getattr(self, name), minimum=0)
        positive("ClientConfig.turn_budget", self.turn_budget)
        if not isinstance(self.credentials, Credentials):
            raise ParameterError(
                f"ClientConfig.credentials: expected Credentials, got {type(self.credentials)}"
            )
        if not self.registries:
            raise ParameterError("ClientConfig.registries: at least one endpoint is needed")
        for pattern, policy in self.hosts:
            if not isinstance(pattern, str) or not isinstance(policy, HostPolicy):
                raise ParameterError(
                    "ClientConfig.hosts: expected (pattern, HostPolicy) pairs, "
                    f"got {(pattern, policy)!r}"
                )

    def host_policy(self, origin: str) -> HostPolicy:
        """The policy for an origin (``scheme://host:port``)."""
        parts = urlsplit(origin)
        host = parts.hostname or ""
        candidates = (host, f"{host}:{parts.port}", origin)
        for pattern, policy in self.hosts:
            if any(fnmatch.fnmatchcase(c, pattern.lower()) for c in candidates):
                return policy
        return self.host
