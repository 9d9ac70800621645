"""Credentials as configuration: which secret belongs to which origin.

A credential is bound to a *scope*: a scheme, a host, a port and a path
prefix (``https://archive.example.org:443/tap``). It is only ever sent to a
URL inside its scope, which makes it belong to one origin (RFC 6454: scheme,
host, port) — never to another host, another port, or plain http when the
scope is https. Four kinds, named by the IVOA single-sign-on
``securityMethod`` identifiers a service's VOSI capabilities list:

- :class:`BearerToken` — ``Authorization: Bearer …`` (``ivo://ivoa.net/sso#token``)
- :class:`BasicAuth` — user and password (``ivo://ivoa.net/sso#BasicAA``)
- :class:`Cookies` — session cookies (``ivo://ivoa.net/sso#cookie``)
- :class:`ClientCertificate` — TLS with a client certificate
  (``ivo://ivoa.net/sso#tls-with-certificate``)

:class:`Credentials` holds them for :class:`~voharvest.ClientConfig`, from
code, from files (netrc, token files, certificate files) or from the
environment. Secrets never show in ``repr()``; credentials given in code are
never pickled (a Dask task graph would carry them in clear): for a cluster,
name files or the environment, which each worker reads for itself.
"""

from __future__ import annotations

import base64
import netrc
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from ._checks import http_parts
from ._exceptions import ParameterError

__all__ = [
    "ANONYMOUS",
    "BASIC",
    "CLIENT_CERTIFICATE",
    "COOKIE",
    "TOKEN",
    "BasicAuth",
    "BearerToken",
    "ClientCertificate",
    "Cookies",
    "Credential",
    "Credentials",
    "Scope",
]

#: IVOA SSO security method identifiers (``securityMethod/@standardID``).
ANONYMOUS = "anonymous"
BASIC = "ivo://ivoa.net/sso#BasicAA"
CLIENT_CERTIFICATE = "ivo://ivoa.net/sso#tls-with-certificate"
COOKIE = "ivo://ivoa.net/sso#cookie"
TOKEN = "ivo://ivoa.net/sso#token"

#: Environment variables :meth:`Credentials.load` reads when ``environment=True``.
ENV_NETRC = "VOHARVEST_NETRC"
ENV_TOKEN_FILE = "VOHARVEST_TOKEN_FILE"
ENV_CERT = "VOHARVEST_CERT"

_MASK = "***"


@dataclass(frozen=True)
class Scope:
    """Where a credential may go: ``scheme://host:port`` and a path prefix.

    Built from a URL with :meth:`parse`; the default port of the scheme is
    made explicit, the path prefix matches whole segments (``/tap`` covers
    ``/tap`` and ``/tap/sync``, not ``/tapir``).
    """

    scheme: str
    host: str
    port: int
    path: str = "/"

    @classmethod
    def parse(cls, url: str) -> Scope:
        parts = http_parts(url.strip(), "credential scope")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ParameterError("credential scope: a scheme, host, port and path only")
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, host, port, parts.path or "/")

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def covers(self, url: str) -> bool:
        """True if ``url`` is inside this scope (same origin, path under the prefix)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            return False
        if (scheme, (parts.hostname or "").lower(), port) != (self.scheme, self.host, self.port):
            return False
        prefix = self.path.rstrip("/")
        path = parts.path or "/"
        return not prefix or path == prefix or path.startswith(prefix + "/")

    def __str__(self) -> str:
        return self.origin + self.path


def _scope(value: str | Scope) -> Scope:
    return value if isinstance(value, Scope) else Scope.parse(value)


class _NoPickle:
    """Secrets given in code are not pickled: see the module doc."""

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(
            f"a {type(self).__name__} given in code is never pickled (it would travel in "
            "clear); give workers files or environment variables (Credentials.from_env, "
            "Credentials(netrc=..., token_files=...))"
        )


@dataclass(frozen=True, repr=False)
class BearerToken(_NoPickle):
    """An OAuth 2.0 bearer token (RFC 6750), sent as ``Authorization: Bearer``."""

    scope: Scope
    token: str
    method: ClassVar[str] = TOKEN

    def __init__(self, scope: str | Scope, token: str) -> None:
        if not token or any(c in token for c in "\r\n"):
            raise ParameterError("BearerToken: an empty token or one with line breaks")
        object.__setattr__(self, "scope", _scope(scope))
        object.__setattr__(self, "token", token)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def __repr__(self) -> str:
        return f"BearerToken({str(self.scope)!r}, token={_MASK!r})"


@dataclass(frozen=True, repr=False)
class BasicAuth(_NoPickle):
    """HTTP basic authentication (RFC 7617), as DaCHS's ``limitTo`` asks for."""

    scope: Scope
    username: str
    password: str
    method: ClassVar[str] = BASIC

    def __init__(self, scope: str | Scope, username: str, password: str) -> None:
        if ":" in username or any(c in username + password for c in "\r\n"):
            raise ParameterError("BasicAuth: a user name with ':' or a line break")
        object.__setattr__(self, "scope", _scope(scope))
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "password", password)

    def headers(self) -> dict[str, str]:
        pair = f"{self.username}:{self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def __repr__(self) -> str:
        return f"BasicAuth({str(self.scope)!r}, username={self.username!r}, password={_MASK!r})"


@dataclass(frozen=True, repr=False)
class Cookies(_NoPickle):
    """Session cookies (``name=value`` pairs), sent in a ``Cookie`` header."""

    scope: Scope
    cookies: tuple[tuple[str, str], ...]
    method: ClassVar[str] = COOKIE

    def __init__(self, scope: str | Scope, cookies: Mapping[str, str]) -> None:
        pairs = tuple(cookies.items())
        if not pairs or any(
            not name or "=" in name or any(c in name + value for c in ';,"\\\r\n\t ')
            for name, value in pairs
        ):
            raise ParameterError(
                "Cookies: expected name=value pairs without ';', ',', quotes or white space "
                "(RFC 6265, section 4.1.1)"
            )
        object.__setattr__(self, "scope", _scope(scope))
        object.__setattr__(self, "cookies", pairs)

    def headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies)}

    def __repr__(self) -> str:
        names = ", ".join(f"{name}={_MASK}" for name, _ in self.cookies)
        return f"Cookies({str(self.scope)!r}, {{{names}}})"


@dataclass(frozen=True, repr=False)
class ClientCertificate:
    """TLS with a client certificate: PEM files, or a ready ``ssl.SSLContext``.

    ``cert_file`` holds the certificate (and the key, unless ``key_file``
    names it); ``ca_file`` adds trusted CAs for the server's certificate.
    With ``context`` given, it is used as it is (it is not picklable). Paths
    are no secret: a certificate named by its files may travel to workers,
    which read the files themselves.
    """

    scope: Scope
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    context: ssl.SSLContext | None = field(default=None, compare=False)
    method: ClassVar[str] = CLIENT_CERTIFICATE

    def __init__(
        self,
        scope: str | Scope,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if (cert_file is None) == (context is None):
            raise ParameterError("ClientCertificate: give either cert_file or context")
        parsed = _scope(scope)
        if parsed.scheme != "https":
            raise ParameterError("ClientCertificate: a TLS client certificate needs https")
        object.__setattr__(self, "scope", parsed)
        object.__setattr__(self, "cert_file", None if cert_file is None else os.fspath(cert_file))
        object.__setattr__(self, "key_file", None if key_file is None else os.fspath(key_file))
        object.__setattr__(self, "ca_file", None if ca_file is None else os.fspath(ca_file))
        object.__setattr__(self, "context", context)

    def headers(self) -> dict[str, str]:
        return {}

    def ssl_context(self, *, verify: bool = True) -> ssl.SSLContext:
        """The context to connect with (built from the files on each call)."""
        if self.context is not None:
            return self.context
        context = ssl.create_default_context(cafile=self.ca_file)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        assert self.cert_file is not None
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ParameterError(
                f"ClientCertificate: can't load {self.cert_file}: {type(exc).__name__}"
            ) from None
        return context

    def __repr__(self) -> str:
        source = "context=<SSLContext>" if self.context is not None else f"{self.cert_file!r}"
        return f"ClientCertificate({str(self.scope)!r}, {source})"


Credential = BearerToken | BasicAuth | Cookies | ClientCertificate


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Every credential of a client, and where more are read from.

    - ``entries``: credentials given in code.
    - ``netrc``: a netrc file (Python's :mod:`netrc` format); ``machine HOST``
      gives :class:`BasicAuth` for ``https://HOST`` (port 443) only; a machine
      written as a URL (``machine http://127.0.0.1:8080/``) for that scope.
      The ``default`` entry is ignored: no password goes to every host.
    - ``token_files``: ``(scope, path)`` pairs, the file holding one token;
      or ``(None, path)``, the file holding lines ``SCOPE TOKEN``.
    - ``environment``: also read ``VOHARVEST_NETRC``, ``VOHARVEST_TOKEN_FILE``
      and ``VOHARVEST_CERT`` (same syntax as the CLI's ``--netrc``,
      ``--token-file`` and ``--cert``) where :meth:`load` runs — on a Dask
      worker, from the worker's own environment.

    Files are read by :meth:`load`, when a client opens, never before: what
    is pickled (for Dask workers) is paths, never secrets.
    """

    entries: tuple[Credential, ...] = ()
    netrc: str | None = None
    token_files: tuple[tuple[str | None, str], ...] = ()
    cert_files: tuple[ClientCertificate, ...] = ()
    environment: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "cert_files", tuple(self.cert_files))
        object.__setattr__(
            self, "token_files", tuple((scope, os.fspath(path)) for scope, path in self.token_files)
        )
        if self.netrc is not None:
            object.__setattr__(self, "netrc", os.fspath(self.netrc))
        for entry in self.entries + self.cert_files:
            if not isinstance(entry, BearerToken | BasicAuth | Cookies | ClientCertificate):
                raise ParameterError(f"Credentials: not a credential: {type(entry).__name__}")
        for cert in self.cert_files:
            if cert.context is not None:
                raise ParameterError("Credentials.cert_files: certificates named by files only")

    def __bool__(self) -> bool:
        return bool(
            self.entries or self.netrc or self.token_files or self.cert_files or self.environment
        )

    def check_portable(self) -> None:
        """ParameterError unless these credentials can travel to other processes
        as names only (files, the environment): none given in code."""
        if any(not isinstance(e, ClientCertificate) or e.context is not None for e in self.entries):
            raise ParameterError(
                "credentials given in code never travel to Dask workers (a task graph would "
                "carry them in clear): name files (Credentials(netrc=..., token_files=..., "
                "cert_files=...)) or use Credentials.from_env() with the variables set on the "
                "workers (docs/auth.md)"
            )

    @classmethod
    def from_env(cls) -> Credentials:
        """Credentials read from the environment wherever they are loaded."""
        return cls(environment=True)

    def load(self, environ: Mapping[str, str] | None = None) -> tuple[Credential, ...]:
        """Every credential, files and environment read now (ParameterError if unreadable)."""
        env = os.environ if environ is None else environ
        found: list[Credential] = list(self.entries) + list(self.cert_files)
        netrc_files = [self.netrc] if self.netrc else []
        token_specs = list(self.token_files)
        if self.environment:
            if env.get(ENV_NETRC):
                netrc_files.append(env[ENV_NETRC])
            if env.get(ENV_TOKEN_FILE):  # one each: a token file holds any number
                token_specs.append(split_spec(env[ENV_TOKEN_FILE]))
            if env.get(ENV_CERT):
                found.append(cert_from_spec(env[ENV_CERT]))
        for path in netrc_files:
            found.extend(read_netrc(path))
        for scope, path in token_specs:
            found.extend(read_token_file(path, scope))
        return tuple(found)


def split_spec(spec: str) -> tuple[str | None, str]:
    """``SCOPE=PATH`` or ``PATH`` (as ``--token-file`` and ``--cert`` take them)."""
    head, sep, tail = spec.partition("=")
    if sep and head.lower().startswith(("http://", "https://")):
        return head, tail
    return None, spec


def cert_from_spec(spec: str) -> ClientCertificate:
    """``SCOPE=CERT.pem[,KEY.pem]`` as a :class:`ClientCertificate` named by files."""
    scope, files = split_spec(spec)
    if scope is None:
        raise ParameterError(f"client certificate {spec!r}: expected SCOPE=CERT[,KEY]")
    cert, _, key = files.partition(",")
    return ClientCertificate(scope, cert, key or None)


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{what} {path}: can't read it ({type(exc).__name__})") from None


def read_token_file(path: str, scope: str | None) -> Iterable[BearerToken]:
    """Bearer tokens from a file: one token (``scope`` given) or ``SCOPE TOKEN`` lines."""
    text = _read_text(path, "token file")
    if scope is not None:
        token = text.strip()
        if not token or any(c.isspace() for c in token):
            raise ParameterError(f"token file {path}: expected one token")
        return [BearerToken(scope, token)]
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 2:
            raise ParameterError(f"token file {path}, line {number}: expected 'SCOPE TOKEN'")
        tokens.append(BearerToken(words[0], words[1]))
    return tokens


def read_netrc(path: str) -> list[BasicAuth]:
    """:class:`BasicAuth` per ``machine`` of a netrc file (see :class:`Credentials`)."""
    try:
        parsed = netrc.netrc(os.fspath(Path(path).expanduser()))
    except (OSError, netrc.NetrcParseError) as exc:
        # NetrcParseError's text quotes the line, which may hold a password.
        raise ParameterError(f"netrc {path}: can't read it ({type(exc).__name__})") from None
    found = []
    for machine, (login, _account, password) in parsed.hosts.items():
        if machine == "default":  # Python's netrc files the default entry under this name
            continue
        scope = machine if "://" in machine else f"https://{machine}"
        found.append(BasicAuth(scope, login or "", password or ""))
    return found
