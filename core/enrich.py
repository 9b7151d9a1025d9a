"""Enrichment: user agents, IP anonymisation, URL parts.

All functions are pure and cheap on repeats; the user-agent parser is the
Rust-backed ``ua-parser`` behind a bounded cache (real traffic repeats a few
thousand agents millions of times).
"""

from __future__ import annotations

import ipaddress

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
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        out = None
    else:
        if addr.version == 4:
            out = str(ipaddress.ip_network(f"{addr}/24", strict=False).network_address)
        else:
            out = str(ipaddress.ip_network(f"{addr}/48", strict=False).network_address)
    if len(_ip_cache) > 100_000:
        _ip_cache.clear()
    _ip_cache[ip] = out
    return out


def page_path(url: str) -> str:
    """The path of a URL without query or fragment: ``https://a.com/x?y`` -> ``/x``."""
    rest = url
    scheme_end = rest.find("://")
    if scheme_end != -1:
        rest = rest[scheme_end + 3:]
        slash = rest.find("/")
        rest = rest[slash:] if slash != -1 else "/"
    for sep in ("?", "#"):
        cut = rest.find(sep)
        if cut != -1:
            rest = rest[:cut]
    return rest or "/"


def referrer_domain(url: str) -> str | None:
    """The host of a referrer URL, lowercased, without ``www.`` and port."""
    scheme_end = url.find("://")
    if scheme_end == -1:
        return None
    host = url[scheme_end + 3:]
    for sep in ("/", "?", "#"):
        cut = host.find(sep)
        if cut != -1:
            host = host[:cut]
    host = host.rsplit("@", 1)[-1]
    if host.startswith("["):
        host = host.split("]", 1)[0] + "]"
    else:
        host = host.split(":", 1)[0]
    host = host.lower()
    if host.startswith("www."):
        host = host[4:]
    return host or None
