"""What a simulated host does (:class:`HostConfig`) and what it saw (:class:`FarmCounters`)."""

from __future__ import annotations

import math
import ssl
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._checks import count, is_number
from .._exceptions import ParameterError
from ._auth import FarmAuth

__all__ = [
    "ENDPOINTS",
    "FAULT_KINDS",
    "HTTP_FAULTS",
    "IMAGE_FORMATS",
    "RETRY_AFTER_FORMS",
    "SEARCH_FAULTS",
    "FarmCounters",
    "HostConfig",
    "parse_faults",
]

#: Faults at the HTTP level: they apply to searches and to images.
HTTP_FAULTS = ("503", "429", "reset", "truncate", "stall")
#: Faults in the VOTable of an answer: they apply to searches only.
SEARCH_FAULTS = ("malformed", "query_error")
#: Every fault a host can inject, in the order a draw walks them.
FAULT_KINDS = HTTP_FAULTS + SEARCH_FAULTS
#: Endpoint groups a fault can apply to: SIA v1, SIA v2, the TAP (registry) endpoint, images.
ENDPOINTS = ("sia", "sia2", "tap", "images")
#: How a host's 429 and 503 answers give Retry-After.
RETRY_AFTER_FORMS = ("seconds", "date", "none")
#: Image formats a host can offer, with the file extension of each.
IMAGE_FORMATS: Mapping[str, str] = MappingProxyType({"image/fits": "fits", "image/jpeg": "jpg"})


def _number(name: str, value: Any, *, low: float, low_inclusive: bool = True) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise ParameterError(f"HostConfig.{name}: expected a finite number, got {value!r}")
    if value < low or (value == low and not low_inclusive):
        relation = ">=" if low_inclusive else ">"
        raise ParameterError(f"HostConfig.{name}: expected a number {relation} {low}, got {value}")
    return float(value)


def _integer(name: str, value: Any, *, low: int) -> int:
    return count(f"HostConfig.{name}", value, minimum=low)


@dataclass(frozen=True, kw_only=True)
class HostConfig:
    """The behaviour of one simulated host. Frozen; change it with :func:`dataclasses.replace`.

    - ``latency``: seconds before the first byte of every answer (after the rate check).
    - ``rate_limit``: requests per second the host accepts (None: no limit), checked
      with a token bucket that holds ``burst`` tokens (default 2: a client pacing
      itself at the limit never trips it through loopback jitter, a burst of 3 at
      once does). A request that finds no token is a rate violation; with
      ``enforce`` it gets 429 with ``Retry-After: 1``, without it is counted and served.
    - ``no_burst``: instead of the bucket, refuse (429, or count without
      ``enforce``) any request that arrives less than ``1 / rate_limit`` minus
      ``tolerance`` seconds after the previous one: a host that wants a
      smooth rate and takes no burst at all.
    - ``refusal``: the status of a refusal for the rate, 429 (default) or 503.
    - ``retry_after``: how 429 and 503 answers say when to come back:
      ``seconds`` (``Retry-After: <retry_after_seconds>``), ``date`` (an HTTP
      date that many seconds ahead, rounded up to the second), or ``none``.
    - ``range_support``: image endpoints honour ``Range``/``If-Range`` (206, 416).
    - ``image_bytes``: approximate size of each FITS file; ``bitpix`` 16 or -32.
    - ``images_per_search``: at most this many images (tiles) per search, at least one.
    - ``formats``: each image is offered once per format, as a separate record.
    - ``faults``: fault name to probability (see :data:`FAULT_KINDS`); the
      probabilities add up to at most 1; one seeded draw per request decides.
    - ``fault_endpoints``: endpoint groups faults apply to (:data:`ENDPOINTS`);
      VOTable faults (malformed, query_error) never apply to images.
    - ``stall_seconds``: how long a ``stall`` fault stops sending mid-body.
    - ``bandwidth``: bytes per second per image response (None: as fast as possible).
    - ``waveband`` and ``title``: what the registry says of the host
      (``title`` None: "VOFarm <waveband> survey host <i>").
    - ``auth``: a :class:`~voharvest.testing.FarmAuth` the host requires of
      every request (None: open to all); ``tls``: the host serves https with
      this server ``ssl.SSLContext`` (None: plain http).
    - ``sia1_format_preset``: a FORMAT preset in the SIA v1 access URL
      (``/sia?FORMAT=image/fits&``), as some real services publish; such a host
      answers an error to any other FORMAT a client adds (``FORMAT=ALL``).
    """

    latency: float = 0.0
    rate_limit: float | None = None
    burst: float = 2.0
    enforce: bool = True
    no_burst: bool = False
    tolerance: float = 0.015
    refusal: int = 429
    retry_after: str = "seconds"
    retry_after_seconds: float = 1.0
    range_support: bool = True
    image_bytes: int = 64 * 1024
    bitpix: int = 16
    images_per_search: int = 4
    formats: tuple[str, ...] = ("image/fits", "image/jpeg")
    faults: Mapping[str, float] = field(default_factory=dict, hash=False)
    fault_endpoints: tuple[str, ...] = ENDPOINTS
    stall_seconds: float = 30.0
    bandwidth: float | None = None
    waveband: str = "optical"
    title: str | None = None
    sia1_format_preset: str | None = None
    auth: FarmAuth | None = None
    tls: ssl.SSLContext | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        _number("latency", self.latency, low=0.0)
        if self.rate_limit is not None:
            _number("rate_limit", self.rate_limit, low=0.0, low_inclusive=False)
        _number("burst", self.burst, low=1.0)
        _number("tolerance", self.tolerance, low=0.0)
        _number("retry_after_seconds", self.retry_after_seconds, low=0.0)
        if self.retry_after not in RETRY_AFTER_FORMS:
            raise ParameterError(
                f"HostConfig.retry_after: expected one of {', '.join(RETRY_AFTER_FORMS)}, "
                f"got {self.retry_after!r}"
            )
        if self.refusal not in (429, 503) or isinstance(self.refusal, bool):
            raise ParameterError(f"HostConfig.refusal: expected 429 or 503, got {self.refusal!r}")
        if self.no_burst and self.rate_limit is None:
            raise ParameterError("HostConfig.no_burst: needs a rate_limit")
        _integer("image_bytes", self.image_bytes, low=1)
        if self.bitpix not in (16, -32) or isinstance(self.bitpix, bool):
            raise ParameterError(f"HostConfig.bitpix: expected 16 or -32, got {self.bitpix!r}")
        _integer("images_per_search", self.images_per_search, low=1)
        formats = tuple(self.formats) if not isinstance(self.formats, str) else (self.formats,)
        if not formats or any(f not in IMAGE_FORMATS for f in formats):
            raise ParameterError(
                f"HostConfig.formats: expected some of {', '.join(IMAGE_FORMATS)}, "
                f"got {self.formats!r}"
            )
        object.__setattr__(self, "formats", tuple(dict.fromkeys(formats)))
        object.__setattr__(self, "faults", MappingProxyType(_check_faults(self.faults)))
        endpoints = tuple(self.fault_endpoints)
        if any(e not in ENDPOINTS for e in endpoints):
            raise ParameterError(
                f"HostConfig.fault_endpoints: expected some of {', '.join(ENDPOINTS)}, "
                f"got {self.fault_endpoints!r}"
            )
        object.__setattr__(self, "fault_endpoints", endpoints)
        _number("stall_seconds", self.stall_seconds, low=0.0)
        if self.bandwidth is not None:
            _number("bandwidth", self.bandwidth, low=0.0, low_inclusive=False)
        if not isinstance(self.waveband, str) or not self.waveband.strip():
            raise ParameterError(f"HostConfig.waveband: expected a word, got {self.waveband!r}")
        if self.title is not None and not isinstance(self.title, str):
            raise ParameterError(f"HostConfig.title: expected a string, got {self.title!r}")
        preset = self.sia1_format_preset
        if preset is not None and preset not in IMAGE_FORMATS:
            raise ParameterError(
                f"HostConfig.sia1_format_preset: expected one of {', '.join(IMAGE_FORMATS)}, "
                f"got {preset!r}"
            )

    @property
    def data_bytes_per_pixel(self) -> int:
        return abs(self.bitpix) // 8


def _check_faults(faults: Any) -> dict[str, float]:
    if not isinstance(faults, Mapping):
        raise ParameterError(f"HostConfig.faults: expected a mapping, got {faults!r}")
    checked: dict[str, float] = {}
    for name, probability in faults.items():
        if name not in FAULT_KINDS:
            raise ParameterError(
                f"HostConfig.faults: unknown fault {name!r}; use {', '.join(FAULT_KINDS)}"
            )
        value = _number(f"faults[{name!r}]", probability, low=0.0)
        if value > 1.0:
            raise ParameterError(f"HostConfig.faults[{name!r}]: {value} is over 1")
        if value > 0:
            checked[name] = value
    total = sum(checked.values())
    if total > 1.0 + 1e-9:
        raise ParameterError(f"HostConfig.faults: the probabilities add up to {total}, over 1")
    return checked


def parse_faults(text: str) -> dict[str, float]:
    """``"503=0.1,reset=0.02"`` as a fault mapping (validated by :class:`HostConfig`)."""
    faults: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        try:
            faults[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise ParameterError(f"faults: {item!r} is not name=probability") from None
    HostConfig(faults=faults)
    return faults


@dataclass
class FarmCounters:
    """What one host saw and did: the server-side truth a test asserts on.

    - ``requests``: every request, refused or not; ``searches``: SIA v1, SIA v2
      and TAP requests that passed the rate limit.
    - ``bytes_sent``: body bytes handed to the connection (headers not included).
    - ``faults``: injected faults per kind; ``rate_violations``: requests that
      found the token bucket empty (refused with 429 or, without ``enforce``, served);
      ``rate_violations_after_stall``: those of them that came within a second
      after the farm's own event loop stalled for at least the host's interval
      (a burst the stall may have made: see ``LoopWatch``).
    - ``in_flight`` / ``max_in_flight``: requests being handled now / at most at once.
    - ``image_fetches``: GET requests per image path (faulted ones included);
      ``completed_image_fetches``: those whose body was sent in full through
      the file's last byte (a 200, or a 206 whose range runs to the end).
    - ``range_requests``: image GETs with a ``Range`` header;
      ``partial_responses``: the 206 answers.
    - ``statuses``: answers per HTTP status (as sent in the headers).
    - ``refusal_times`` / ``search_times``: seconds after the host's first
      request at which it refused a request for its rate (429) / answered a
      search with 200: what a benchmark needs to say when a client was
      refused and how fast it was served.
    """

    requests: int = 0
    bytes_sent: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    rate_violations: int = 0
    rate_violations_after_stall: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    searches: int = 0
    image_fetches: Counter[str] = field(default_factory=Counter)
    completed_image_fetches: Counter[str] = field(default_factory=Counter)
    range_requests: int = 0
    partial_responses: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    first_request_at: float | None = None
    refusal_times: list[float] = field(default_factory=list)
    search_times: list[float] = field(default_factory=list)

    def reset(self) -> None:
        """Zero everything but the requests in flight now."""
        in_flight = self.in_flight
        fresh = FarmCounters(in_flight=in_flight, max_in_flight=in_flight)
        for name in fresh.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "requests": self.requests,
            "bytes_sent": self.bytes_sent,
            "faults": dict(self.faults),
            "rate_violations": self.rate_violations,
            "rate_violations_after_stall": self.rate_violations_after_stall,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "searches": self.searches,
            "image_fetches": sum(self.image_fetches.values()),
            "completed_image_fetches": sum(self.completed_image_fetches.values()),
            "distinct_images_completed": len(self.completed_image_fetches),
            "range_requests": self.range_requests,
            "partial_responses": self.partial_responses,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "refusal_times": [round(t, 4) for t in self.refusal_times],
            "search_times": [round(t, 4) for t in self.search_times],
        }
