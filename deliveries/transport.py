"""The HTTP transport: the only code that sends requests to receivers.

Requests are coroutines (``Transport.post``) run on the process's send loop
(``deliveries.send_loop``), so a request in flight costs a socket and a little
memory, not a thread; ``Transport.send`` is the blocking form for callers
outside the loop (operator notices, tests). Every request:
- goes to an address vetted by ``webhooks.target_policy`` *after* DNS
  resolution: the connector's resolver (``_VettingResolver``) refuses a host
  any of whose addresses is blocked, and the connection is made to the vetted
  addresses themselves (TLS still checks the certificate against the URL's
  host name), so DNS rebinding cannot swap the target between the check and
  the connection. A pooled connection stays pinned to the address it was
  opened to;
- is bounded in time: a connect timeout and a deadline for the whole request,
  including a receiver that drips its answer byte by byte;
- never follows redirects (a 3xx is just a failed attempt);
- reads at most ``HOOKPOST_RESPONSE_MAX_BYTES`` of the response, as sent
  (a Content-Encoding is not undone: a 2xx whose body would not decompress
  is still the receiver's 2xx);
- is refused before connecting if a header could not be put on the wire
  (``webhooks.header_policy.unsendable``: an endpoint row older than the
  header rules), as a result like any other refusal;
- reuses keep-alive connections per (host name, port, scheme) through
  aiohttp's connector, with no limit of its own: the endpoint's in-flight cap
  (``deliveries.bulkhead``) bounds how many are open, so none is discarded.

``post`` never raises for network or HTTP outcomes: it returns a
``TransportResult`` describing what happened (Saleor's lesson: results, not
exceptions, cross this boundary). Whatever the receiver sent, the result's
headers and error message are already storable text (``deliveries.reply``):
this is the one door a reply comes in by, so nothing behind it has to know
what a reply may contain.

Why aiohttp and not httpx: httpx resolves inside its connection pool, keyed
by the URL's host, so pinning a vetted address means rewriting the URL to the
IP, which breaks TLS SNI and certificate checks; aiohttp takes a resolver,
keeps SNI and certificate checks on the host name, and in a measurement on
this project's hardware sent at about half the CPU per request of httpx or of
urllib3 in threads (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import ipaddress
import socket
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.http_writer
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from multidict import CIMultiDict
from yarl import URL

from deliveries import reply, send_loop
from webhooks.header_policy import unsendable
from webhooks.target_policy import (
    IPAddress,
    IPNetwork,
    Target,
    TargetRejected,
    check_address,
    check_url,
    parse_networks,
)

USER_AGENT = "Hookpost-Webhooks/1.0 (+https://www.standardwebhooks.com/)"
_CHUNK = 65536
# How long an idle keep-alive connection is kept for the next request to its host.
_KEEPALIVE_SECONDS = 30.0
_MAX_LINE = 65536

Resolver = Callable[[str, int], list[IPAddress]]


@dataclass(frozen=True)
class TransportResult:
    """What one request produced. ``status`` is None when no response came.

    ``headers`` and ``error_message`` are storable as they are
    (``deliveries.reply``); ``body`` is the capped raw bytes.
    """

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error_class: str = ""
    error_message: str = ""
    duration_ms: int = 0
    connected: bool = False  # False when we refused or failed before connecting

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Refused(OSError):
    """A target refused before any connection; an OSError so that aiohttp passes it
    through its connector (wrapped in ``ClientConnectorError.os_error``)."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to (A and AAAA)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _overrides() -> dict[str, str]:
    """``HOOKPOST_RESOLVE`` entries ``host=address`` (like curl --resolve)."""
    return dict(item.split("=", 1) for item in settings.HOOKPOST_RESOLVE if "=" in item)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve through ``HOOKPOST_RESOLVE`` first, then the system resolver.

    An override may be written in any spelling an attacker might use in DNS
    (``2130706433``); it is parsed as the number it means and vetted like any
    other answer.
    """
    override = _overrides().get(host)
    if override is None:
        return system_resolver(host, port)
    try:
        return [ipaddress.ip_address(override)]
    except ValueError:
        packed = socket.inet_aton(override)  # accepts 2130706433, 0x7f.1, 0177.0.0.1
        return [ipaddress.IPv4Address(packed)]


def vetted_addresses(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    """The addresses of ``host``, every one of them allowed by the policy; raises ``_Refused``.

    Every answer must pass: a mixed answer is how rebinding attacks start.
    """
    allowed = _allowed_networks(tuple(settings.HOOKPOST_ALLOWED_TARGET_NETWORKS))
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError, ValueError) as exc:
        raise _Refused("DNSError", f"could not resolve {host}: {exc}") from exc
    if not addresses:
        raise _Refused("DNSError", f"{host} has no addresses")
    for address in addresses:
        try:
            check_address(address, allowed)
        except TargetRejected as exc:
            raise _Refused(
                "TargetRejected", f"refused target: {host} resolves to a blocked address; {exc}"
            ) from exc
    return addresses


class _VettingResolver(AbstractResolver):
    """aiohttp's resolver for the transport: ``vetted_addresses``, run off the loop
    (``getaddrinfo`` blocks). aiohttp connects only to what it returns, and its DNS
    cache is off, so every new connection is vetted again."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await asyncio.get_running_loop().run_in_executor(
            None, vetted_addresses, host, port, self._resolver
        )
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


_open_transports: weakref.WeakSet[Transport] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """Close the pools still open when the process ends (aiohttp complains otherwise)."""
    for transport in list(_open_transports):
        send_loop.run_briefly(transport.close(), timeout=1.0)


class Transport:
    """Sends signed webhook requests. One instance per process (``outbound.transport``):
    its connection pool lives on the send loop."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._resolver = resolver or resolve
        self._session: aiohttp.ClientSession | None = None

    def __del__(self) -> None:
        session = self._session
        if session is not None and not session.closed:
            send_loop.close_soon(session.close())

    def send(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,
        connect_timeout: float | None = None,
    ) -> TransportResult:
        """``post``, from a thread outside the send loop: blocks until the result."""
        return send_loop.run(self.post(url, headers, body, timeout, connect_timeout))

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,
        connect_timeout: float | None = None,
    ) -> TransportResult:
        """POST ``body`` to ``url``; never raises for network or HTTP outcomes."""
        started = time.monotonic()
        connect = min(connect_timeout or settings.HOOKPOST_CONNECT_TIMEOUT_SECONDS, timeout)
        allowed = _allowed_networks(tuple(settings.HOOKPOST_ALLOWED_TARGET_NETWORKS))
        try:
            _checked_url(url, allowed)
        except TargetRejected as exc:
            return _failure("TargetRejected", f"refused target: {exc}", started, connected=False)
        problem = unsendable(headers)
        if problem is not None:
            return _failure("HeaderRejected", f"refused request: {problem}", started, connected=False)
        connected = False
        try:
            async with asyncio.timeout(timeout):
                async with self._client().post(
                    URL(url, encoded=True),
                    data=body,
                    headers=_request_headers(headers),
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, connect=connect),
                ) as response:
                    connected = True
                    data = await _read_capped(response, settings.HOOKPOST_RESPONSE_MAX_BYTES)
                    fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]
                    return TransportResult(
                        status=response.status,
                        headers=reply.headers(fields),
                        body=data,
                        duration_ms=_ms(started),
                        connected=True,
                    )
        except TimeoutError:
            if not connected and time.monotonic() - started < timeout:
                return _failure("ConnectionError", f"no connection within {connect:g} s", started, False)
            return _failure("Timeout", f"no complete response within {timeout:g} s", started)
        except aiohttp.ClientConnectorError as exc:
            refused = exc.os_error if isinstance(exc.os_error, _Refused) else _refusal_in(exc)
            if refused is not None:
                return _failure(refused.error_class, refused.message, started, connected=False)
            if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
                return _failure("TLSError", str(exc)[:500], started)
            return _failure("ConnectionError", _connect_reason(exc), started, connected=False)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            if isinstance(exc, ssl.SSLError):
                return _failure("TLSError", str(exc)[:500], started)
            return _failure("ConnectionError", _reason(exc), started)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_VettingResolver(self._resolver),
                use_dns_cache=False,
                limit=0,
                limit_per_host=0,
                keepalive_timeout=_KEEPALIVE_SECONDS,
                ssl=_tls_context(),
            )
            _open_transports.add(self)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
                # A reply's status line and each header may be as long as http.client
                # allows (64 KiB), not aiohttp's 8 KiB: a long header is the receiver's
                # business, stored capped (deliveries.reply).
                max_line_size=_MAX_LINE,
                max_field_size=_MAX_LINE,
            )
        return self._session

    async def close(self) -> None:
        """Close the pooled connections (on the send loop)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _request_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    request_headers = CIMultiDict(headers)
    request_headers["User-Agent"] = USER_AGENT
    return request_headers


def _refusal_in(exc: BaseException) -> _Refused | None:
    """The ``_Refused`` behind ``exc`` (aiohttp may wrap it once more), if any."""
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, _Refused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every request, so TLS sessions are resumed."""
    return ssl.create_default_context()


@functools.lru_cache(maxsize=8)
def _allowed_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The allowlist, parsed once per distinct setting rather than on every send."""
    return parse_networks(cidrs)


@functools.lru_cache(maxsize=4096)
def _checked_url(url: str, allowed: tuple[IPNetwork, ...]) -> Target:
    """``check_url``, once per distinct URL and allowlist: it depends on nothing else (it
    resolves nothing; the answers of DNS are vetted on every new connection). A refusal is
    not cached."""
    return check_url(url, allowed)


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """Read up to ``cap`` bytes; drop the connection past the cap instead of draining it."""
    chunks: list[bytes] = []
    size = 0
    while size < cap:
        chunk = await response.content.read(min(_CHUNK, cap - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    if not response.content.at_eof():
        response.close()
    return b"".join(chunks)


def _failure(error_class: str, message: str, started: float, connected: bool = True) -> TransportResult:
    return TransportResult(
        status=None,
        error_class=error_class,
        error_message=reply.text(message),
        duration_ms=_ms(started),
        connected=connected,
    )


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    """ "cannot connect to host:port: <why>", without aiohttp's TLS context in it."""
    why = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
    return f"cannot connect to {exc.host}:{exc.port}: {why}"[:500]


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:500]


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


# --- Latin-1 header values ------------------------------------------------------------
#
# RFC 9110 allows field values beyond ASCII (obs-text), and the header policy
# (webhooks.header_policy) accepts Latin-1 values, sent one byte per character
# as http.client and urllib3 send them. aiohttp writes headers as UTF-8, which
# would turn "é" into two bytes the receiver reads as "Ã©". Only a header block
# with such a value takes this path; the rest keep aiohttp's own writer.

_aiohttp_serialize_headers = aiohttp.http_writer._serialize_headers


def _serialize_headers(status_line: str, headers: Any) -> bytes:
    if all(value.isascii() for value in headers.values()):
        return _aiohttp_serialize_headers(status_line, headers)
    safe = aiohttp.http_writer._safe_header
    lines = [status_line, *(f"{safe(k)}: {safe(v)}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


aiohttp.http_writer._serialize_headers = _serialize_headers
