"""The target-address policy: which webhook URLs and addresses Hookpost may call."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.target_policy import TargetRejected, check_address, check_url, parse_networks

LOOPBACK_ALLOWED = parse_networks(["127.0.0.0/8"])


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://example.com/x", "example.com", 443),
        ("http://93.184.216.34/", "93.184.216.34", 80),
    ],
)
def test_public_urls_are_accepted(url: str, host: str, port: int) -> None:
    target = check_url(url)

    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "http:// or https://"),
        ("http:///path", "no host"),
        ("https://user:secret@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("http://localhost/", "local host name"),
        ("http://foo.localhost/", "local host name"),
        ("http://127.0.0.1/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::1]/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "private|reserved"),
        ("http://2130706433/", "non-canonical"),
        ("http://0x7f000001/", "non-canonical"),
        ("http://0177.0.0.1/", "non-canonical"),
        ("http://127.1/", "non-canonical"),
        ("http://017700000001/", "non-canonical"),
    ],
)
def test_unsafe_urls_are_rejected_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(TargetRejected, match=reason):
        check_url(url)


def test_allowlisted_network_bypasses_the_block() -> None:
    target = check_url("http://127.0.0.1:8080/hook", LOOPBACK_ALLOWED)

    assert target.ip == ipaddress.IPv4Address("127.0.0.1")
    assert target.port == 8080


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://2130706433/", "non-canonical"),
    ],
)
def test_allowlist_does_not_admit_odd_spellings_of_allowed_addresses(url: str, reason: str) -> None:
    with pytest.raises(TargetRejected, match=reason):
        check_url(url, LOOPBACK_ALLOWED)


def test_allowlist_does_not_open_other_networks() -> None:
    with pytest.raises(TargetRejected, match="private"):
        check_url("http://10.0.0.1/", LOOPBACK_ALLOWED)


def test_parse_networks_names_a_bad_entry() -> None:
    with pytest.raises(ValueError, match="not-a-cidr"):
        parse_networks(["10.0.0.0/8", "not-a-cidr"])


def _passes(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        check_address(ip)
    except TargetRejected:
        return False
    return True


@given(st.ip_addresses(v=4))
def test_ipv4_address_passes_exactly_when_global_and_unicast(ip: ipaddress.IPv4Address) -> None:
    # check_address either returns or raises TargetRejected (anything else
    # would propagate and fail the test).
    assert _passes(ip) == (ip.is_global and not ip.is_multicast)


@given(st.ip_addresses(v=6))
def test_ipv6_address_passes_only_when_global_unicast_and_not_mapped(ip: ipaddress.IPv6Address) -> None:
    if _passes(ip):
        assert ip.is_global
        assert not ip.is_multicast
        assert ip.ipv4_mapped is None
