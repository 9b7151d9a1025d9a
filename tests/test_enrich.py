"""Enrichment rules checked against their plain definitions.

The fast forms (C library for IPv6, two regex replacements for the page path)
must give exactly what the obvious reference gives, for any input."""

from __future__ import annotations

import ipaddress

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from erp.core.enrich import anonymize_ip, page_path_expr


def reference_anonymize(ip: str) -> str | None:
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def reference_page_path(url: str | None) -> str | None:
    """The path of a URL: after an optional ``scheme://host``, up to ``?`` or ``#``; ``/`` if empty."""
    if url is None:
        return None
    import re

    m = re.match(r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?([^?#]*)", url, re.S)
    assert m is not None
    return m.group(1) or "/"


hextet = st.integers(0, 0xFFFF).map(lambda g: f"{g:x}")
ipv6_text = st.one_of(
    st.lists(st.sampled_from(["0", "0", "1", "ffff"]) | hextet, min_size=8, max_size=8).map(":".join),
    st.builds(lambda a, b: ":".join(a) + "::" + ":".join(b),
              st.lists(hextet, max_size=3), st.lists(hextet, max_size=3)),
    st.builds(lambda a, v4: ":".join(a) + ":" + v4, st.lists(hextet, min_size=6, max_size=6),
              st.ip_addresses(v=4).map(str)),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
)


@settings(max_examples=1000, deadline=None)
@given(ipv6_text)
def test_ipv6_anonymisation_matches_ipaddress(ip: str) -> None:
    assert anonymize_ip(ip) == reference_anonymize(ip)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF:.%eth ", max_size=45))
def test_anything_else_is_decided_like_ipaddress(text: str) -> None:
    assert anonymize_ip(text) == reference_anonymize(text)


def test_known_ipv6_forms() -> None:
    assert anonymize_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3::"
    assert anonymize_ip("2001:0DB8:0000:0000::1") == "2001:db8::"
    assert anonymize_ip("::ffff:203.0.113.9") == "::"
    assert anonymize_ip("fe80::1%eth0") == "fe80::"  # scoped: decided by ipaddress
    assert anonymize_ip("1::2::3") is None


url_text = st.one_of(
    st.text(alphabet="aZ9+.-:/?#\n é%@[]", max_size=30),
    st.builds(lambda s, rest: s + rest, st.sampled_from(["http://", "https://", "x+y://", "1a://", "//"]),
              st.text(alphabet="ab/?#:.\n@", max_size=20)),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.none() | url_text, max_size=20))
def test_page_path_matches_its_definition(urls: list[str | None]) -> None:
    got = pl.DataFrame({"u": urls}, schema={"u": pl.String}).select(page_path_expr(pl.col("u"))).to_series()
    assert got.to_list() == [reference_page_path(u) for u in urls]
