"""Where Hookpost may send requests: the target-address policy.

Webhook URLs are chosen by tenants, so without this policy anyone could make
our workers call internal services (SSRF). Two checks use it:

- at registration, ``check_url`` refuses malformed URLs, schemes other than
  http/https, local host names and IP literals in blocked networks;
- at delivery, the transport resolves the host and calls ``check_address`` on
  every resolved address, then connects to the vetted address only, so a DNS
  answer cannot change between the check and the connection.

Blocked: loopback, private, link-local (so the 169.254.169.254 metadata
address), CGNAT, multicast, reserved, unspecified, IPv4-mapped IPv6, ULA, and
anything else not globally routable, plus numeric host spellings other than a
dotted quad (``2130706433``, ``0177.0.0.1``, ``0x7f.1``). Networks listed in
``HOOKPOST_ALLOWED_TARGET_NETWORKS`` bypass the network block (development and
tests only); odd spellings are refused even then.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)
_DOTTED_QUAD = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


class TargetRejected(ValueError):
    """The URL or address may not be a webhook target; ``str(exc)`` says why."""


@dataclass(frozen=True)
class Target:
    """A URL that passed the registration checks."""

    scheme: str
    host: str  # lowercase host name or IP literal, without brackets
    port: int
    ip: IPAddress | None  # set when the host is an IP literal


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse allowlist CIDRs; raises ValueError naming a bad entry."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network: {cidr!r}") from exc
    return tuple(networks)


def check_address(ip: IPAddress, allowed: Iterable[IPNetwork] = ()) -> None:
    """Raise TargetRejected unless ``ip`` is a public address or allowlisted."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise TargetRejected(f"{ip} is an IPv4-mapped IPv6 address")
    if any(ip.version == net.version and ip in net for net in allowed):
        return
    reason = _blocked_reason(ip)
    if reason:
        raise TargetRejected(f"{ip} is {reason}")


def _blocked_reason(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives here)"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved, non-routable address"
    return None


def check_url(url: str, allowed: Iterable[IPNetwork] = ()) -> Target:
    """Validate a webhook URL at registration; raise TargetRejected with a reason.

    Host names are not resolved here (DNS may legitimately change later); the
    transport checks the resolved addresses at every delivery.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRejected(f"the URL is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise TargetRejected("the URL must start with http:// or https://")
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRejected("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRejected("the URL must not contain credentials; use custom headers instead")
    if any(ch.isspace() for ch in url):
        raise TargetRejected("the URL must not contain whitespace")
    if port is None:
        port = 443 if scheme == "https" else 80
    allowed = tuple(allowed)
    ip = _literal_ip(host)
    if ip is not None:
        check_address(ip, allowed)
    elif not allowed:
        # With an allowlist (development, tests) local names are resolved and
        # vetted by the transport like any other; without one they are refused
        # here so the tenant hears about it at once.
        name = host.rstrip(".")
        if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
            raise TargetRejected(f"{host} is a local host name")
        if "." not in name:
            raise TargetRejected(f"{host} is not a fully qualified host name")
    return Target(scheme=scheme, host=host, port=port, ip=ip)


def _literal_ip(host: str) -> IPAddress | None:
    """The IP a literal host names, or None for a host name.

    Refuses numeric spellings other than a canonical dotted quad, which
    resolvers expand in surprising ways (``2130706433`` is 127.0.0.1).
    """
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError as exc:
            raise TargetRejected(f"{host} is not a valid IPv6 address") from exc
    if _NUMERIC_HOST.match(host):
        if not _DOTTED_QUAD.match(host):
            raise TargetRejected(f"{host} is a non-canonical IP address spelling")
        return ipaddress.IPv4Address(host)
    return None
