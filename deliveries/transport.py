"""The HTTP transport: the only code that sends requests to receivers.

Every request:
- goes to an address vetted by ``webhooks.target_policy`` *after* DNS
  resolution, and the connection is pinned to that address (TLS still checks
  the certificate against the URL's host name), so DNS rebinding cannot swap
  the target between the check and the connection;
- is bounded in time: a connect timeout and a deadline for the whole request,
  including a receiver that drips its answer byte by byte;
- never follows redirects (a 3xx is just a failed attempt);
- reads at most ``HOOKPOST_RESPONSE_MAX_BYTES`` of the response, as sent
  (a Content-Encoding is not undone: a 2xx whose body would not decompress
  is still the receiver's 2xx);
- is refused before connecting if a header could not be put on the wire
  (``webhooks.header_policy.unsendable``: an endpoint row older than the
  header rules), as a result like any other refusal;
- reuses keep-alive connections per (address, host name) through urllib3's
  pool manager.

``send`` never raises for network or HTTP outcomes: it returns a
``TransportResult`` describing what happened (Saleor's lesson: results, not
exceptions, cross this boundary). Whatever the receiver sent, the result's
headers and error message are already storable text (``deliveries.reply``):
this is the one door a reply comes in by, so nothing behind it has to know
what a reply may contain.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import itertools
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from deliveries import reply
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
_CHUNK = 8192

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


class _Refused(Exception):
    """Raised internally when the target is refused before any connection."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to (A and AAAA)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


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


# --- The whole-request deadline ------------------------------------------------------
#
# urllib3 and http.client only know per-socket-operation timeouts, so a
# receiver that drips its status line or headers a byte at a time could hold
# a worker for ever. Nothing in the standard library or urllib3 offers a
# deadline for a whole request, hence this small watchdog: one thread that
# shuts down the socket of any request still running at its deadline, which
# makes the blocked read fail at once.

_local = threading.local()
# How late past its deadline a request may be cut (the watchdog sleeps at least this long).
_RESOLUTION = 0.05


class _Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object]] = []
        self._cancelled: set[int] = set()
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, conn: object, deadline: float) -> int:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="transport-watchdog", daemon=True)
                self._thread.start()
            seq = next(self._seq)
            heapq.heappush(self._heap, (deadline, seq, conn))
            if self._heap[0][1] == seq:  # the earliest deadline now: the thread must wake sooner
                self._cond.notify()
            return seq

    def disarm(self, seq: int) -> None:
        with self._cond:
            self._cancelled.add(seq)

    def _run(self) -> None:
        while True:
            due: list[object] = []
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, seq, conn = heapq.heappop(self._heap)
                    if seq in self._cancelled:
                        self._cancelled.discard(seq)
                    else:
                        due.append(conn)
                if not due:
                    # Nearly every entry is a request that finished long ago: wake for
                    # them in bulk, at most every _RESOLUTION, not once per request
                    # (at a thousand requests a second, that cost more CPU than a send).
                    self._cond.wait(max(self._heap[0][0] - now, _RESOLUTION) if self._heap else None)
            for conn in due:
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


_WATCHDOG = _Watchdog()


class _DeadlineMixin:
    """Arms the watchdog with the calling thread's deadline on connect and request."""

    def _arm(self) -> None:
        deadline = getattr(_local, "deadline", None)
        if deadline is not None and getattr(_local, "armed", None) is None:
            _local.armed = _WATCHDOG.arm(self, deadline)

    def connect(self) -> None:
        self._arm()
        super().connect()  # type: ignore[misc]

    def request(self, *args: object, **kwargs: object) -> None:
        self._arm()
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class Transport:
    """Sends signed webhook requests. One instance per worker process."""

    def __init__(self, resolver: Resolver | None = None, num_pools: int = 200) -> None:
        self._resolver = resolver or resolve
        self._pools = urllib3.PoolManager(num_pools=num_pools, maxsize=4, block=False, retries=False)
        self._pools.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def send(
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
        try:
            target_ip, target = self._vet(url)
            problem = unsendable(headers)
            if problem is not None:
                raise _Refused("HeaderRejected", f"refused request: {problem}")
        except _Refused as exc:
            return _failure(exc.error_class, str(exc), started, connected=False)
        deadline = started + timeout
        timed_out = _failure("Timeout", f"no complete response within {timeout:g} s", started)
        _local.deadline, _local.armed = deadline, None
        try:
            return self._post(url, target_ip, target, headers, body, connect, deadline, started)
        except (ConnectTimeoutError, NewConnectionError) as exc:
            return _failure("ConnectionError", _reason(exc), started, connected=False)
        except (ReadTimeoutError, _Deadline):
            return _failure("Timeout", timed_out.error_message, started)
        except SSLError as exc:
            return _failure("TLSError", _reason(exc), started)
        except (ProtocolError, HTTPError, OSError) as exc:
            if time.monotonic() >= deadline:  # the watchdog cut the socket
                return _failure("Timeout", timed_out.error_message, started)
            return _failure("ConnectionError", _reason(exc), started)
        finally:
            if _local.armed is not None:
                _WATCHDOG.disarm(_local.armed)
            _local.deadline = _local.armed = None

    def _vet(self, url: str) -> tuple[IPAddress, Target]:
        allowed = _allowed_networks(tuple(settings.HOOKPOST_ALLOWED_TARGET_NETWORKS))
        try:
            target = _checked_url(url, allowed)
        except TargetRejected as exc:
            raise _Refused("TargetRejected", f"refused target: {exc}") from exc
        if target.ip is not None:
            return target.ip, target
        try:
            addresses = self._resolver(target.host, target.port)
        except (OSError, UnicodeError, ValueError) as exc:
            raise _Refused("DNSError", f"could not resolve {target.host}: {exc}") from exc
        if not addresses:
            raise _Refused("DNSError", f"{target.host} has no addresses")
        # Every answer must pass: a mixed answer is how rebinding attacks start.
        for address in addresses:
            try:
                check_address(address, allowed)
            except TargetRejected as exc:
                raise _Refused(
                    "TargetRejected", f"refused target: {target.host} resolves to a blocked address; {exc}"
                ) from exc
        return addresses[0], target

    def _post(
        self,
        url: str,
        ip: IPAddress,
        target: Target,
        headers: Mapping[str, str],
        body: bytes,
        connect: float,
        deadline: float,
        started: float,
    ) -> TransportResult:
        remaining = max(deadline - time.monotonic(), 0.001)
        host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
        if ":" in target.host and target.ip is not None:
            host_header = f"[{target.host}]" if target.port in (80, 443) else f"[{target.host}]:{target.port}"
        pool_kwargs: dict[str, object] = {}
        if target.scheme == "https" and target.ip is None:
            pool_kwargs = {"server_hostname": target.host, "assert_hostname": target.host}
        pool = self._pools.connection_from_host(
            str(ip), port=target.port, scheme=target.scheme, pool_kwargs=pool_kwargs
        )
        path = _path_of(url)
        request_headers = {**headers, "Host": host_header, "User-Agent": USER_AGENT}
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=connect, read=remaining),
            assert_same_host=False,
        )
        try:
            data = _read_capped(response, settings.HOOKPOST_RESPONSE_MAX_BYTES, deadline)
        finally:
            response.release_conn()
        return TransportResult(
            status=response.status,
            headers=reply.headers(response.headers.items()),
            body=data,
            duration_ms=_ms(started),
            connected=True,
        )


@functools.lru_cache(maxsize=8)
def _allowed_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The allowlist, parsed once per distinct setting rather than on every send."""
    return parse_networks(cidrs)


@functools.lru_cache(maxsize=4096)
def _checked_url(url: str, allowed: tuple[IPNetwork, ...]) -> Target:
    """``check_url``, once per distinct URL and allowlist: it depends on nothing else (it
    resolves nothing; the answers of DNS are vetted on every send). A refusal is not cached."""
    return check_url(url, allowed)


class _Deadline(Exception):
    pass


def _read_capped(response: urllib3.BaseHTTPResponse, cap: int, deadline: float) -> bytes:
    """Read up to ``cap`` bytes before ``deadline``; drop the connection past the cap."""
    chunks: list[bytes] = []
    size = 0
    while size < cap:
        if time.monotonic() > deadline:
            response.close()
            raise _Deadline()
        # read1: at most one socket read, so a receiver dripping bytes cannot
        # hold us past the deadline.
        chunk = response.read1(min(_CHUNK, cap - size), decode_content=False)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    # More than we keep: close instead of draining an unbounded body.
    response.close()
    return b"".join(chunks)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _failure(error_class: str, message: str, started: float, connected: bool = True) -> TransportResult:
    return TransportResult(
        status=None,
        error_class=error_class,
        error_message=reply.text(message),
        duration_ms=_ms(started),
        connected=connected,
    )


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    # urllib3 messages embed the pool object; keep the useful tail.
    return text.split(": ", 1)[-1][:500] if "HTTPConnection" in text else text[:500]


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
