"""Enrichment: user agents, IP anonymisation, URL parts.

All functions are pure and cheap on repeats; the user-agent parser is the
Rust-backed ``ua-parser`` behind a bounded cache (real traffic repeats a few
thousand agents millions of times).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Callable

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from erp.core.dedup import string_buffers

try:  # built from core/_scan.c at install when a C compiler is there
    from erp.core import _scan
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _scan = None  # type: ignore[assignment]

#: Cache size for parsed user agents; when full it is cleared (cheap, bounded).
UA_CACHE_SIZE = 50_000

_TABLET_HINTS = ("ipad", "tablet", "kindle", "silk", "playbook", "nexus 7", "nexus 9", "sm-t")
_BOT_HINTS = ("bot", "crawler", "spider", "slurp", "headless", "lighthouse", "curl/", "wget/",
              "python-requests", "httpclient")
_MOBILE_OS = ("ios", "android", "windows phone", "blackberry os", "kaios", "firefox os")


class UserAgentCache:
    """user agent string -> (browser, os, device_type)."""

    def __init__(self, size: int = UA_CACHE_SIZE) -> None:
        self._size = size
        self._cache: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._parse = None

    def parse(self, ua: str) -> tuple[str | None, str | None, str | None]:
        hit = self._cache.get(ua)
        if hit is not None:
            return hit
        if self._parse is None:
            import ua_parser

            self._parse = ua_parser.parse
        if len(self._cache) >= self._size:
            self._cache.clear()
        result = self._classify(ua)
        self._cache[ua] = result
        return result

    def _classify(self, ua: str) -> tuple[str | None, str | None, str | None]:
        r = self._parse(ua[:2048])  # type: ignore[misc]
        browser = r.user_agent.family if r.user_agent else None
        os_ = r.os.family if r.os else None
        device = r.device.family if r.device else None
        low = ua.lower()
        if device == "Spider" or any(h in low for h in _BOT_HINTS):
            kind = "bot"
        elif any(h in low for h in _TABLET_HINTS) or (os_ == "Android" and "mobile" not in low):
            kind = "tablet"
        elif (os_ or "").lower() in _MOBILE_OS or "mobi" in low:
            kind = "mobile"
        elif browser in (None, "Other") and os_ in (None, "Other"):
            kind = "other"
        else:
            kind = "desktop"
        return (None if browser == "Other" else browser, None if os_ == "Other" else os_, kind)


_ip_cache: dict[str, str | None] = {}


def anonymize_ip(ip: str) -> str | None:
    """Zero the host part: IPv4 keeps /24, IPv6 keeps /48 (as common analytics
    tools do). A value that is not an IP address is dropped (None): it cannot be
    anonymised, so it is not kept."""
    hit = _ip_cache.get(ip, False)
    if hit is not False:
        return hit  # type: ignore[return-value]
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or p[0] != "0")
                               for p in parts):
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0"  # the common case, without the cache
    text = ip.strip()
    out = _anonymize_ipv6(text)
    if out is None:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            addr = None
        if addr is not None:
            prefix = 24 if addr.version == 4 else 48
            out = str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)
    if len(_ip_cache) > 100_000:
        _ip_cache.clear()
    _ip_cache[ip] = out
    return out


def _anonymize_ipv6(ip: str) -> str | None:
    """The /48 network of a plain IPv6 address through the C library (much faster
    than ``ipaddress``, the same canonical text); None for anything else
    (IPv4, scoped addresses, junk), which ``ipaddress`` then decides."""
    if ":" not in ip or "%" in ip:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip)
    except (OSError, ValueError):
        return None
    return socket.inet_ntop(socket.AF_INET6, packed[:6] + bytes(10))


# --- vectorized (Polars) enrichment -------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"


def anonymize_ipv4_expr(col: pl.Expr) -> pl.Expr:
    """IPv4 text -> its /24 network address; null for anything else."""
    return pl.when(col.str.contains(_IPV4)).then(col.str.replace(r"\.\d+$", ".0"))


def page_path_expr(col: pl.Expr) -> pl.Expr:
    """The path of a URL without query or fragment: ``https://a.com/x?y`` -> ``/x``;
    ``/`` for a bare host."""
    # two plain replacements: much faster than one extract with a capture group
    path = col.str.replace(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", "").str.replace(r"(?s)[?#].*", "")
    return pl.when(col.is_null()).then(None).when(path == "").then(pl.lit("/")).otherwise(path)


def referrer_domain_expr(col: pl.Expr) -> pl.Expr:
    """The host of a URL, lowercased, without ``www.``, user info or port."""
    host = col.str.extract(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)", 1) \
        .str.to_lowercase().str.replace(r"^www\.", "")
    return pl.when(host == "").then(None).otherwise(host)


def per_distinct(values: pl.Series, derive: "Callable[[pl.Expr], pl.Expr]") -> pl.Series:
    """``derive`` (an expression that maps null to null) of each value, computed
    once per distinct value: referrers repeat heavily (a chunk's ~3,700
    distinct properties texts name ~13 referrers), and the pattern is ~1 us a value."""
    uniq = values.drop_nulls().unique()
    if len(uniq) * 2 > len(values):
        return pl.select(derive(pl.lit(values))).to_series().rename(values.name)
    out = pl.select(derive(pl.lit(uniq))).to_series()
    return values.replace_strict(uniq, out, default=None, return_dtype=out.dtype)


_JSON_STRING = r'"(?:[^"\\]|\\.)*"'


def strip_keys_expr(col: pl.Expr, keys: tuple[str, ...]) -> pl.Expr:
    """Remove ``"key": <string or null>`` members from JSON object text that
    has no escapes and no nested objects (see ``strip_keys`` for any text).

    One pass: a member after a comma goes with that comma, a first member
    with the comma after it. Inside a JSON string every quote is escaped, so
    the pattern cannot match there."""
    names = "|".join(keys)
    member = rf'"(?:{names})"\s*:\s*(?:{_JSON_STRING}|null)'
    return col.str.replace_all(rf"\s*,\s*{member}|{member}\s*,?\s*", "")


def strip_keys(values: pl.Series, keys: tuple[str, ...]) -> pl.Series:
    """Top-level ``"key": <string or null>`` members removed from each JSON
    object text (nested objects keep theirs): by the pattern when the text is
    plain, by a JSON parser otherwise. Callers pass distinct texts: this does
    not look for repeats."""
    # what the pattern cannot judge: an escape anywhere (a key spelled "\u0069p"),
    # or an object inside the object (its keys are not top-level members)
    if _scan is not None and not values.null_count():
        out, hard = _strip_native(values, keys)
    else:
        hard = (values.str.contains("\\", literal=True)
                | values.str.slice(1).str.contains("{", literal=True)).fill_null(False)
        out = pl.select(strip_keys_expr(pl.lit(values), keys)).to_series()
    rows = hard.arg_true().to_list()
    if rows:
        texts = values.gather(rows).to_list()
        out = out.scatter(rows, pl.Series([_strip_parsed(t, keys) for t in texts], dtype=pl.String))
    return out.rename(values.name)


def _strip_native(values: pl.Series, keys: tuple[str, ...]) -> tuple[pl.Series, pl.Series]:
    """``strip_keys_expr`` in C (core/_scan.c ``strip_members``: the same
    removals, ~15x faster), and which texts are hard."""
    assert _scan is not None
    o, d, h = _scan.strip_members(*string_buffers(values), tuple(k.encode() for k in keys))
    out = pa.LargeStringArray.from_buffers(len(values), pa.py_buffer(o), pa.py_buffer(d))
    series = pl.from_arrow(out)
    assert isinstance(series, pl.Series)
    return series, pl.Series(np.frombuffer(h, dtype=np.bool_))


def _strip_parsed(text: str, keys: tuple[str, ...]) -> str:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. a lone surrogate escape: kept, escaped again
        obj = json.loads(text)
        dumps = lambda o: json.dumps(o, separators=(",", ":"))  # noqa: E731
    else:
        dumps = lambda o: orjson.dumps(o).decode()  # noqa: E731
    if isinstance(obj, dict):
        for k in keys:
            if k in obj and (obj[k] is None or isinstance(obj[k], str)):
                del obj[k]
    return dumps(obj)
