"""Which credential goes with a request, and redirects that never carry it astray.

:class:`Authenticator` is the run-time half of :mod:`voharvest._auth` (the
configuration): for each URL it chooses a credential the way pyvo's
``AuthSession`` does (its ``AuthURLs`` and ``CredentialStore``), with one rule
more — a credential is only chosen for a URL inside its scope (its origin and
path prefix), so it never reaches another host:

1. The credentials whose scope covers the URL, the most specific scope first
   (then in the order configured). None: the request goes anonymous.
2. What the service accepts there, learned from its VOSI capabilities
   (:meth:`Authenticator.learn`): an exact (``use="full"``) access URL wins,
   else the longest access URL that is a prefix of the URL. Unknown (no
   capabilities learned): every method is taken as accepted, since the user
   bound the credential to this scope.
3. The first credential whose method is accepted. When the service allows
   anonymous access and a credential is accepted too, the credential goes
   (as in pyvo: anonymous access to a proprietary collection would silently
   return its public part only). No accepted credential: anonymous.

With credentials configured, the transport follows redirects here
(:meth:`Authenticator.send`) instead of in aiohttp: each hop chooses its
credential afresh for its own URL, so a redirect to another origin carries
none of the first origin's — neither ``Authorization``, nor ``Cookie``, nor
the client certificate (which aiohttp would present to any host it is
redirected to, as the ``ssl`` argument holds for the whole request).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ._auth import ANONYMOUS, ClientCertificate, Credential, Credentials
from ._checks import is_http_url
from ._exceptions import AuthenticationError, RedirectError
from .protocol.vosi import AccessRule

if TYPE_CHECKING:  # the transport hands its session in; aiohttp is imported there
    import aiohttp

__all__ = ["Authenticator", "Choice", "challenge_schemes"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# An auth-scheme token at the start of a challenge (RFC 9110, section 11.6.1).
_SCHEME = re.compile(r"(?:^|,)\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?=\s+[^\s=,]|\s*(?:,|$))")


def challenge_schemes(value: str | None) -> tuple[str, ...]:
    """The auth-schemes a ``WWW-Authenticate`` value names (``Basic``, ``Bearer``, ...)."""
    if not value:
        return ()
    return tuple(dict.fromkeys(_SCHEME.findall(value)))


@dataclass(frozen=True)
class Choice:
    """The method chosen for one URL and the credential that goes with it (or none)."""

    method: str
    credential: Credential | None = None

    def headers(self) -> dict[str, str]:
        return {} if self.credential is None else self.credential.headers()


_NONE = Choice(ANONYMOUS)


class Authenticator:
    """Chooses credentials per URL and sends requests with them (see the module doc)."""

    def __init__(self, credentials: Iterable[Credential], *, verify_tls: bool = True) -> None:
        ordered = list(credentials)
        # Most specific scope first; the configured order breaks ties (sort is stable).
        self._credentials = sorted(ordered, key=lambda c: -len(c.scope.path.rstrip("/")))
        self._exact: dict[str, frozenset[str]] = {}
        self._prefixes: dict[str, frozenset[str]] = {}
        self._methods: dict[int, str] = {}
        # One context per certificate, made now (files are read: not on the event
        # loop, see Transport.open); connections are pooled by context.
        self._contexts = {
            id(c): c.ssl_context(verify=verify_tls)
            for c in self._credentials
            if isinstance(c, ClientCertificate)
        }

    @classmethod
    def load(cls, credentials: Credentials, *, verify_tls: bool = True) -> Authenticator:
        """Read the credentials' files and certificates (blocking: run it in a thread)."""
        return cls(credentials.load(), verify_tls=verify_tls)

    def learn(self, rules: Iterable[AccessRule]) -> None:
        """Record what a service's capabilities accept (methods add up per URL)."""
        for rule in rules:
            table = self._exact if rule.exact else self._prefixes
            table[rule.url] = table.get(rule.url, frozenset()) | rule.methods

    def accepted(self, url: str) -> frozenset[str] | None:
        """The methods accepted at ``url``, or None when no capabilities say."""
        if url in self._exact:
            return self._exact[url]
        best = max((p for p in self._prefixes if url.startswith(p)), key=len, default=None)
        return None if best is None else self._prefixes[best]

    def choose(self, url: str) -> Choice:
        """The credential for ``url`` (anonymous when none is in scope and accepted)."""
        accepted = self.accepted(url)
        for credential in self._credentials:
            if credential.scope.covers(url) and (accepted is None or credential.method in accepted):
                return Choice(credential.method, credential)
        return _NONE

    def method_of(self, response: aiohttp.ClientResponse) -> str:
        """The method the request of ``response`` was sent with."""
        return self._methods.get(id(response), ANONYMOUS)

    def _ssl(self, choice: Choice, default: Any) -> Any:
        credential = choice.credential
        if not isinstance(credential, ClientCertificate):
            return default
        return self._contexts[id(credential)]

    # --- redirects (RFC 9110, section 15.4) -----------------------------------

    @staticmethod
    def _target(response: aiohttp.ClientResponse, url: str) -> str:
        """The Location, resolved against the request's URL (RFC 9110, section 10.2.2)."""
        location = response.headers.get("Location", "")
        target = urljoin(url, location.strip())
        if not is_http_url(target):
            raise RedirectError("redirect to a non-HTTP URL", url=url)
        return target.split("#", 1)[0]

    @staticmethod
    def _method_after(status: int, method: str) -> str:
        """303 turns any method but HEAD into GET (RFC 9110, section 15.4.4); 301 and
        302 turn POST into GET, as user agents do (sections 15.4.2, 15.4.3); 307 and
        308 keep method and body (sections 15.4.8, 15.4.9)."""
        if status == 303 and method != "HEAD":
            return "GET"
        if status in (301, 302) and method == "POST":
            return "GET"
        return method

    @staticmethod
    def _downgraded(previous: str, target: str) -> bool:
        """From https to http: no credential goes in clear for the rest of the chain,
        even to the same host and even to a scope configured for http. (The scheme
        is part of the origin, RFC 6454, so scopes alone drop an https credential;
        this rule also keeps an http one out of a chain that began protected.)"""
        return urlsplit(previous).scheme.lower() == "https" and (
            urlsplit(target).scheme.lower() == "http"
        )

    @asynccontextmanager
    async def send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        allow_redirects: bool = True,
        max_redirects: int = 10,
        data: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request with redirects followed here, each hop's credential its own.

        Per hop, the credential is chosen for the hop's URL — the origin change
        rule of RFC 9110, section 15.4 ("consider removing ... Authorization"
        when the redirect goes to another origin) holds for every credential
        kind, the client certificate included.
        """
        default_ssl = kwargs.pop("ssl", True)
        hops = 0
        downgraded = False
        while True:
            choice = _NONE if downgraded else self.choose(url)
            sent = {**headers, **choice.headers()}
            async with session.request(
                method,
                url,
                data=data,
                headers=sent,
                allow_redirects=False,
                ssl=self._ssl(choice, default_ssl),
                **kwargs,
            ) as response:
                if not (
                    allow_redirects
                    and response.status in _REDIRECTS
                    and "Location" in response.headers
                ):
                    self._methods[id(response)] = choice.method
                    try:
                        yield response
                    finally:
                        self._methods.pop(id(response), None)
                    return
                hops += 1
                if max_redirects and hops > max_redirects:
                    raise RedirectError(f"too many redirects (over {max_redirects})", url=url)
                target = self._target(response, url)
            new_method = self._method_after(response.status, method)
            if new_method != method:
                data = None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            downgraded = downgraded or self._downgraded(url, target)
            method, url = new_method, target


def authentication_error(
    status: int,
    url: str,
    origin: str,
    method: str,
    www_authenticate: str | None,
    reason: str,
    body: str,
) -> AuthenticationError:
    """The typed 401/403 error: origin, method tried, and what the server asks for."""
    schemes = challenge_schemes(www_authenticate)
    tried = "no credential" if method == ANONYMOUS else f"method {method}"
    text = f"HTTP {status} {reason}".strip() + f" from {origin} ({tried})"
    if schemes:
        text += f"; the server asks for {', '.join(schemes)}"
    elif status == 403 and method != ANONYMOUS:
        text += "; the credential was refused"
    return AuthenticationError(
        text,
        status=status,
        url=url,
        origin=origin,
        method=method,
        challenge=schemes,
        body=body,
    )
