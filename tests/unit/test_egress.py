"""The egress policy judges resolved addresses: defaults deny internal ranges, allow widens, deny and own ports win."""

from __future__ import annotations

import pytest

from schedule_grpc.security.egress import EgressDenied, EgressPolicy


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("fe80::1", "link-local"),
        ("169.254.10.10", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("not-an-ip", "not an IP address"),
    ],
)
def test_the_default_policy_refuses_internal_addresses_saying_why(ip: str, reason: str) -> None:
    with pytest.raises(EgressDenied, match=reason):
        EgressPolicy().check(ip, 80)


@pytest.mark.parametrize("ip", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_the_default_policy_lets_public_addresses_through(ip: str) -> None:
    EgressPolicy().check(ip, 443)


def test_an_allowed_network_opens_a_default_denial_but_not_the_metadata_endpoint_beside_it() -> None:
    policy = EgressPolicy.parse(allow=["127.0.0.0/8"])
    policy.check("127.0.0.1", 8080)
    with pytest.raises(EgressDenied, match="metadata"):
        policy.check("169.254.169.254", 80)


def test_a_denied_network_wins_over_an_allowed_one() -> None:
    policy = EgressPolicy.parse(allow=["10.0.0.0/8"], deny=["10.9.0.0/16"])
    policy.check("10.1.0.1", 80)
    with pytest.raises(EgressDenied, match=r"denied network 10\.9\.0\.0/16"):
        policy.check("10.9.1.1", 80)


def test_the_services_own_listeners_stay_unreachable_even_where_loopback_is_allowed() -> None:
    policy = EgressPolicy.parse(allow=["127.0.0.0/8"]).with_denied_endpoints([("0.0.0.0", 9464)])
    policy.check("127.0.0.1", 8081)
    with pytest.raises(EgressDenied, match="own listeners"):
        policy.check("127.0.0.1", 9464)


def test_a_bad_network_is_reported_by_name() -> None:
    with pytest.raises(ValueError, match="not a network"):
        EgressPolicy.parse(allow=["10.0.0.0/33"])


def test_the_open_policy_allows_loopback() -> None:
    EgressPolicy.open().check("127.0.0.1", 80)
