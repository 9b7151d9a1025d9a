"""Enrichment rules checked against their plain definitions.

The fast forms (C library for IPv6, two regex replacements for the page path,
one for the metadata keys, each applied once per distinct value) must give
exactly what the obvious reference gives, for any input."""

from __future__ import annotations

import ipaddress
import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from erp.core.enrich import anonymize_ip, page_path_expr, strip_keys, strip_keys_expr
from erp.core.events import PROMOTED_METADATA, parse_time
from erp.core.parse import _times


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


# JSON text without backslashes or nested objects: what the pattern itself handles
plain_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\{'),
                     max_size=12)
key_names = st.sampled_from(list(PROMOTED_METADATA) + ["sdk", "ipx", "x_ip", "user", "", "ip "]) | plain_text
leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | plain_text
separators = st.sampled_from([(",", ":"), (", ", ": "), (" ,  ", " :\t"), (",\n", ":")])


def without_top_level(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if not (k in PROMOTED_METADATA and (v is None or isinstance(v, str)))}


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(key_names, leaf | st.lists(leaf, max_size=3), max_size=6), separators,
       st.sampled_from([None, 1]))
def test_the_pattern_strips_plain_objects_like_a_parser_would(meta: dict, seps: tuple[str, str], indent) -> None:
    text = json.dumps(meta, separators=seps, indent=indent, ensure_ascii=False)
    got = pl.select(strip_keys_expr(pl.lit(text), PROMOTED_METADATA)).item()
    assert json.loads(got) == without_top_level(meta), (text, got)


# any text: quotes, backslashes, braces, and promoted keys nested at any depth
any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
any_key = st.sampled_from(list(PROMOTED_METADATA) + ["sdk", "ipx", "{", '"ip"']) | any_text
any_leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | any_text
any_nested = st.recursive(any_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(any_key, inner, max_size=3), max_leaves=8)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.dictionaries(any_key, any_nested, max_size=6), min_size=1, max_size=8), separators,
       st.sampled_from([None, 1]), st.booleans())
def test_metadata_keys_are_stripped_like_a_parser_would(metas: list[dict], seps: tuple[str, str], indent,
                                                        ascii_only: bool) -> None:
    texts = [json.dumps(m, separators=seps, indent=indent, ensure_ascii=ascii_only) for m in metas]
    got = strip_keys(pl.Series("metadata", texts + [None, texts[0]], dtype=pl.String), PROMOTED_METADATA)
    assert got.name == "metadata"
    assert got[-2] is None and got[-1] == got[0]
    for m, text, out in zip(metas, texts, got.to_list()):
        assert json.loads(out) == without_top_level(m), (text, out)


def test_nested_objects_keep_keys_named_like_promoted_ones() -> None:
    text = '{"ip": "1.2.3.4", "device": {"ip": "10.0.0.1", "user_agent": null}, "country": "FR"}'
    got = strip_keys(pl.Series([text]), PROMOTED_METADATA).item()
    assert json.loads(got) == {"device": {"ip": "10.0.0.1", "user_agent": None}}


# --- timestamps: what the vectorised parser reads agrees with the reference ----------

def _digits(n: int) -> st.SearchStrategy[str]:
    return st.integers(0, 10**n - 1).map(lambda v: f"{v:0{n}d}")


iso_shaped = st.builds(lambda y, mo, d, h, mi, s, frac, sep, zone: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}",
                       st.sampled_from(["0000", "0001", "1969", "2000", "2024", "2026", "9999"]) | _digits(4),
                       st.sampled_from(["01", "02", "12", "13", "00"]) | _digits(2),
                       st.sampled_from(["01", "28", "29", "30", "31", "32"]) | _digits(2),
                       st.sampled_from(["00", "23", "24"]) | _digits(2),
                       st.sampled_from(["00", "59", "60"]) | _digits(2),
                       st.sampled_from(["00", "59", "60"]) | _digits(2),
                       st.sampled_from(["", ".0", ".123", ".999999", ".1234567"]) | _digits(3).map("." .__add__),
                       st.sampled_from(["T", "T", "T", " "]),
                       st.sampled_from(["Z", "Z", "Z", "z", "", "+00:00", "+02:00", "-05:30", "+14:00", "+24:00"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(iso_shaped | st.none(), min_size=1, max_size=20))
def test_timestamps_are_read_as_the_reference_reads_them(values: list[str | None]) -> None:
    """Chunks all in the form SDKs send take a fast path, others the general one
    (offsets, no zone, a space for T); both agree with ``parse_time``."""
    got = _times(pl.Series("timestamp", values, dtype=pl.String)).to_list()
    for value, us in zip(values, got):
        if value is None:
            assert us is None
            continue
        try:
            expected = parse_time(value)
        except ValueError:
            expected = None
        assert us == expected, value


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | url_text, max_size=30), st.integers(1, 4))
def test_per_distinct_equals_the_expression_on_every_row(urls: list[str | None], repeat: int) -> None:
    from erp.core.enrich import per_distinct, referrer_domain_expr

    values = pl.Series("referrer", urls * repeat, dtype=pl.String)  # repeats take the distinct path
    expected = pl.select(referrer_domain_expr(pl.lit(values))).to_series()
    got = per_distinct(values, referrer_domain_expr)
    assert got.to_list() == expected.to_list()
    assert got.dtype == pl.String and len(got) == len(values)
