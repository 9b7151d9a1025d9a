"""Synthetic events: a deterministic generator of realistic erp NDJSON.

``generate_events`` writes ``events`` lines in the erp event format for demos,
tests and benchmarks. The same arguments always give byte-identical output:
every random choice comes from generators seeded with ``seed`` and nothing
reads the clock, the environment or ``uuid4``.

What the data looks like:

- Tenants ``acme``, ``globex``, ``initech``, ``umbrella``, ``hooli``, then
  ``tenant-006``, ... with Zipf-like sizes (the first tenant is the largest).
- Each tenant has its own visitors. A visitor (``anonymous_id``, one device)
  comes back over several days until it churns; traffic follows a weekly cycle
  (quieter weekends) and a daily cycle in the tenant's audience time zone.
- A session is a run of events seconds to minutes apart. The funnel
  ``page_view`` -> ``signup`` -> ``add_to_cart`` -> ``purchase`` drops off at
  each step: only signed-up visitors (``user_id`` set) add to cart, and only
  after adding to cart in the same session do they purchase. ``click``,
  ``search`` (a custom event) and ``conversion`` (plan upgrades) fill the rest.
- ``purchase`` and ``conversion`` carry ``revenue`` (2 decimals) and
  ``currency``; IPs are from documentation ranges (RFC 5737, RFC 3849).

Lines come day by day, tenant by tenant within a day, sessions in start order:
roughly time ordered per tenant, not globally sorted.

``dirty`` replaces that fraction of lines (exactly ``round(dirty * events)``)
with corrupted ones, chosen and corrupted deterministically: malformed JSON,
a missing ``event_type``, wrong types, an invalid tenant id, invalid UTF-8,
a far-future timestamp, or an exact copy of an earlier line.
"""

from __future__ import annotations

import bisect
import gzip
import io
import itertools
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from erp.core.errors import ErpError

__all__ = ["GenerateResult", "generate_events", "tenant_names", "DIRTY_KINDS"]

_NAMED_TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")
_DAY_MS = 86_400_000
_BATCH_EVENTS = 512  # records stamped and serialised together (small stays cache-hot)
_SLOT_EVENTS = 512  # at most this many events are built per time slot
_WRITE_BYTES = 8 << 20  # bytes gathered before each write
_DUMPS = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE

#: The ways a dirty line is broken, in the order of ``_corrupt``'s cases.
DIRTY_KINDS = (
    "malformed_json",
    "missing_event_type",
    "wrong_type",
    "invalid_tenant",
    "invalid_utf8",
    "future_timestamp",
    "duplicate",
)


@dataclass(frozen=True)
class GenerateResult:
    """What ``generate_events`` wrote.

    ``bytes`` counts the NDJSON bytes before any gzip compression; ``path`` is
    the file written, or the stream's ``name`` (``"<stream>"`` if it has none).
    """

    path: str
    events: int
    bytes: int
    tenants: list[str]
    start: date
    days: int


def tenant_names(count: int) -> list[str]:
    """The first ``count`` tenant ids: five named ones, then ``tenant-006``..."""
    names = list(_NAMED_TENANTS[:count])
    names.extend(f"tenant-{i:03d}" for i in range(len(names) + 1, count + 1))
    return names


# ---------------------------------------------------------------------------
# Fixed vocabularies
# ---------------------------------------------------------------------------

#: (user agent, device class, weight). Device class picks the SDK.
_USER_AGENTS: tuple[tuple[str, str, float], ...] = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.0.0 Safari/537.36", "desktop", 16),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/127.0.0.0 Safari/537.36", "desktop", 7),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.0.0 Safari/537.36", "desktop", 9),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Safari/605.1.15", "desktop", 7),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:129.0) Gecko/20100101 Firefox/129.0",
     "desktop", 4),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "desktop", 1.5),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.0.0 Safari/537.36", "desktop", 1.5),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.0.0 Safari/537.36 Edg/128.0.2739.42", "desktop", 5),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.6; rv:129.0) Gecko/20100101 Firefox/129.0",
     "desktop", 1),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.0.0 Safari/537.36 OPR/113.0.0.0", "desktop", 0.8),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.6613.88 Mobile Safari/537.36", "android", 12),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36", "android", 3),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.6613.99 Mobile Safari/537.36", "android", 2.5),
    ("Mozilla/5.0 (Android 14; Mobile; rv:129.0) Gecko/129.0 Firefox/129.0", "android", 0.7),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", "ios", 11),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "ios", 4),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) CriOS/128.0.6613.98 Mobile/15E148 Safari/604.1", "ios", 1.5),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_10 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "ios", 1.5),
    ("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Mobile/15E148 Safari/604.1", "ios", 2),
    ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/127.0.6533.103 Safari/537.36", "android", 1),
    ("Mozilla/5.0 (Linux; Android 12; Lenovo TB-J606F) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.6478.122 Safari/537.36", "android", 0.5),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.0.0 Safari/537.36", "desktop", 0.8),
    ("Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.6613.127 Mobile Safari/537.36", "android", 2),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Mobile/15E148 Instagram 346.0.0.24.80", "ios", 0.8),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot", 0.9),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bot", 0.4),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "bot", 0.3),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "bot", 0.15),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "bot", 0.2),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; "
     "+https://openai.com/gptbot)", "bot", 0.15),
)
_UA_CUM = list(itertools.accumulate(w for _, _, w in _USER_AGENTS))

_SDKS = {
    "desktop": ("erp-js/2.4.1", "erp-js/2.4.0", "erp-js/2.3.7"),
    "android": ("erp-android/1.9.2", "erp-android/1.9.0", "erp-js/2.4.1"),
    "ios": ("erp-ios/1.8.3", "erp-ios/1.8.1", "erp-js/2.4.1"),
    "bot": ("erp-js/2.4.1",),
}

#: (referrer or None for direct traffic, weight)
_REFERRERS: tuple[tuple[str | None, float], ...] = (
    (None, 32),
    ("https://www.google.com/", 30),
    ("https://www.bing.com/", 5),
    ("https://duckduckgo.com/", 3),
    ("https://search.yahoo.com/", 1),
    ("https://www.ecosia.org/", 0.8),
    ("https://t.co/", 4),
    ("https://www.facebook.com/", 5),
    ("https://l.instagram.com/", 3),
    ("https://www.linkedin.com/", 4),
    ("https://www.reddit.com/", 3),
    ("https://news.ycombinator.com/", 2),
    ("https://www.youtube.com/", 2),
)
_REF_CUM = list(itertools.accumulate(w for _, w in _REFERRERS))
_UTM = {
    "https://www.google.com/": "?utm_source=google&utm_medium=cpc&utm_campaign=brand",
    "https://www.facebook.com/": "?utm_source=facebook&utm_medium=social&utm_campaign=autumn",
    "https://www.linkedin.com/": "?utm_source=linkedin&utm_medium=social&utm_campaign=b2b",
    "https://t.co/": "?utm_source=twitter&utm_medium=social",
}

_BLOG_SLUGS = (
    "getting-started", "pricing-explained", "release-notes-2026-08", "how-we-scaled",
    "customer-story-northwind", "ten-tips-for-faster-onboarding", "security-update",
    "year-in-review", "a-better-dashboard", "migrating-from-spreadsheets",
)
_DOC_SECTIONS = ("quickstart", "install", "api/events", "api/reports", "sdk/javascript",
                 "sdk/ios", "sdk/android", "faq", "billing", "integrations/slack")
_CLICK_TARGETS = (
    ("button", "Get started"), ("button", "Start free trial"), ("link", "Pricing"),
    ("link", "Docs"), ("button", "Watch demo"), ("link", "Log in"), ("button", "Contact sales"),
    ("tab", "Monthly"), ("tab", "Yearly"), ("link", "Read more"), ("button", "Subscribe"),
    ("image", "Product gallery"), ("button", "Copy code"), ("link", "Changelog"),
)
_SEARCH_QUERIES = (
    "pricing", "api key", "export csv", "invoice", "dark mode", "team members", "sso",
    "webhooks", "refund", "integrations", "mobile app", "delete account", "shipping",
    "discount code", "gift card", "size guide", "return policy", "track order",
)
_SIGNUP_METHODS = (("email", 55), ("google", 30), ("github", 9), ("apple", 6))
_SIGNUP_CUM = list(itertools.accumulate(w for _, w in _SIGNUP_METHODS))
_PLANS = (("pro", 49.0), ("team", 99.0), ("business", 299.0))
_PRODUCT_WORDS = (
    "Classic", "Deluxe", "Eco", "Smart", "Mini", "Pro", "Ultra", "Travel", "Studio", "Everyday",
)
_PRODUCT_NOUNS = (
    "Backpack", "Mug", "Lamp", "Notebook", "Headphones", "Water Bottle", "Desk Mat", "Hoodie",
    "Sneakers", "Charger", "Keyboard", "Plant Pot", "Blanket", "Sunglasses", "Watch Strap",
)

#: Audience UTC offsets (hours), one per tenant in turn: US, EU, US west, Japan, UK...
_TZ_OFFSETS = (-5, 1, -8, 9, 0, 2, -3, 5, 8, -6, 10, 3)
#: Relative traffic by local hour of day (quiet at night, peaks midday and evening).
_HOUR_WEIGHTS = (1.2, 0.8, 0.5, 0.4, 0.4, 0.6, 1.2, 2.4, 3.8, 4.8, 5.4, 5.6,
                 5.8, 5.9, 5.8, 5.6, 5.4, 5.2, 5.4, 6.0, 6.2, 5.4, 3.8, 2.2)
#: Relative traffic by weekday, Monday first.
_WEEKDAY_WEIGHTS = (1.0, 1.06, 1.05, 1.0, 0.93, 0.68, 0.64)

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).astype(np.uint32)
_UUID_DASHES = (8, 13, 18, 23)
_UUID_HEX_POS = np.array([i for i in range(36) if i not in _UUID_DASHES])


def _uuid_strings(gen: np.random.Generator, n: int) -> list[str]:
    """``n`` random version-4 UUID strings, vectorised (one numpy pass)."""
    if n == 0:
        return []
    raw = np.frombuffer(gen.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    chars = np.full((n, 36), ord("-"), dtype=np.uint32)
    chars[:, _UUID_HEX_POS] = _HEX[nibbles]
    return chars.view("<U36").ravel().tolist()


def _iso_ms(timestamps_ms: np.ndarray) -> list[str]:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` strings, vectorised."""
    arr = timestamps_ms.astype("datetime64[ms]")
    return np.datetime_as_string(arr, unit="ms", timezone="UTC").tolist()


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    wsum = sum(weights)
    if total == 0 or wsum <= 0:
        return [0] * len(weights)
    exact = [total * w / wsum for w in weights]
    parts = [int(x) for x in exact]
    short = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in by_remainder[:short]:
        parts[i] += 1
    return parts


# ---------------------------------------------------------------------------
# Per-tenant world: visitors, products, sessions
# ---------------------------------------------------------------------------


#: A session: anonymous_id, session_id, metadata, events as (event_type, user_id, properties).
_Session = tuple[str, str, dict[str, str], list[tuple[str, str | None, dict[str, Any]]]]


class _Visitor:
    __slots__ = ("anonymous_id", "user_id", "last_day", "meta", "ua_kind")

    def __init__(self, anonymous_id: str, last_day: int, meta: dict[str, str], ua_kind: str
                 ) -> None:
        self.anonymous_id = anonymous_id
        self.user_id: str | None = None
        self.last_day = last_day
        self.meta = meta
        self.ua_kind = ua_kind


class _Tenant:
    """One tenant's state across days: its visitors and catalogue."""

    def __init__(self, name: str, index: int, rnd: random.Random, start: date, days: int
                 ) -> None:
        self.name = name
        self.index = index
        self.base_url = f"https://{name}.example.com"
        self.brand = name.replace("-", " ").title()
        self.tz_ms = _TZ_OFFSETS[index % len(_TZ_OFFSETS)] * 3_600_000
        self.currency = "EUR" if self.tz_ms in (3_600_000, 7_200_000, 0) else "USD"
        self.days = days
        self.visitors: list[_Visitor] = []
        self.remaining = 0  # events still to write for this tenant
        self.carry = 0  # events written beyond the plan so far
        self.sdk_offset = rnd.randrange(3)
        # A shop of 40-120 products with log-normal prices.
        self.products = []
        for p in range(rnd.randrange(40, 121)):
            pname = f"{rnd.choice(_PRODUCT_WORDS)} {rnd.choice(_PRODUCT_NOUNS)}"
            price = round(min(max(rnd.lognormvariate(3.4, 0.8), 3.0), 900.0), 2)
            self.products.append((f"sku-{index:03d}-{p:04d}", pname, price))
        # Weekly seasonality, a growth trend and some day-to-day noise.
        growth = rnd.uniform(-0.15, 0.6)
        first_weekday = start.weekday()
        self.day_weights = [
            _WEEKDAY_WEIGHTS[(first_weekday + d) % 7] * (1 + growth * d / days)
            * rnd.lognormvariate(0, 0.08)
            for d in range(days)
        ]
        self.pages = self._pages()

    def _pages(self) -> list[tuple[str, str]]:
        b = self.brand
        pages = [("/", f"{b} | Home"), ("/pricing", f"Pricing | {b}"),
                 ("/features", f"Features | {b}"), ("/about", "About us"), ("/contact", "Contact")]
        pages += [(f"/blog/{s}", s.replace("-", " ").capitalize()) for s in _BLOG_SLUGS]
        pages += [(f"/docs/{s}", f"Docs: {s}") for s in _DOC_SECTIONS]
        return pages


class _World:
    """All tenants; builds each day's events for a tenant."""

    def __init__(self, names: list[str], rnd: random.Random, start: date, days: int) -> None:
        self.rnd = rnd
        self.days = days
        self.start_ms = int(datetime(start.year, start.month, start.day,
                                     tzinfo=timezone.utc).timestamp() * 1000)
        self.tenants = [_Tenant(n, i, rnd, start, days) for i, n in enumerate(names)]

    # -- visitors ----------------------------------------------------------

    def _new_visitor(self, tenant: _Tenant, day: int) -> _Visitor:
        rnd = self.rnd
        ua, kind, _ = _USER_AGENTS[bisect.bisect_right(_UA_CUM, rnd.random() * _UA_CUM[-1])]
        r = rnd.random()
        if r < 0.42:
            ip = f"203.0.113.{rnd.randrange(1, 255)}"
        elif r < 0.8:
            ip = f"198.51.100.{rnd.randrange(1, 255)}"
        else:
            ip = (f"2001:db8:{rnd.getrandbits(16):x}:{rnd.getrandbits(16):x}:"
                  f"{rnd.getrandbits(16):x}::{rnd.getrandbits(16):x}")
        sdks = _SDKS[kind]
        sdk = sdks[(tenant.sdk_offset + (rnd.random() < 0.25)) % len(sdks)]
        meta = {"ip": ip, "user_agent": ua, "sdk_version": sdk}
        # Lifetime: many visit once; the rest return for days to weeks.
        if kind == "bot" or rnd.random() < 0.45:
            last = day
        else:
            last = day + int(rnd.expovariate(1 / max(3.0, self.days * 0.35)))
        h = f"{rnd.getrandbits(128):032x}"
        anon = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        v = _Visitor(anon, last, meta, kind)
        tenant.visitors.append(v)
        return v

    def _pick_visitor(self, tenant: _Tenant, day: int, active: list[_Visitor]) -> _Visitor:
        rnd = self.rnd
        # New visitors are a bigger share early on, when nobody has come back yet.
        p_new = 0.30 + 0.5 / (1 + day)
        if not active or rnd.random() < p_new:
            return self._new_visitor(tenant, day)
        # Identified users come back more often than anonymous ones.
        v = active[int(rnd.random() * len(active))]
        if v.user_id is None and rnd.random() < 0.3:
            v = active[int(rnd.random() * len(active))]
        return v

    # -- one day -----------------------------------------------------------

    def day_events(self, tenant: _Tenant, day: int, budget: int
                   ) -> Iterator[tuple[list[_Session], list[int]]]:
        """Yield about ``budget`` events of ``tenant`` on ``day`` as
        ``(sessions, starts)``, one time slot after another; ``starts`` are the
        sessions' start times (epoch ms, ascending).
        """
        rnd = self.rnd
        rand = rnd.random
        active = [v for v in tenant.visitors if v.last_day >= day]
        tenant.visitors = active[:]
        # The daily cycle, in the audience's time zone, with a little noise.
        weights = [w * rnd.lognormvariate(0, 0.1) for w in _HOUR_WEIGHTS]
        shift = tenant.tz_ms // 3_600_000
        hour_budgets = _apportion(budget, [weights[(h + shift) % 24] for h in range(24)])
        day_ms = self.start_ms + day * _DAY_MS
        for hour, hour_budget in enumerate(hour_budgets):
            # Busy hours are cut into equal slots so few records are alive at once.
            n_slots = -(-hour_budget // _SLOT_EVENTS)
            if n_slots <= 1:
                slot_budgets, slot_len = [hour_budget], 3_600_000
            else:
                slot_budgets = _apportion(hour_budget, [1.0] * n_slots)
                slot_len = 3_600_000 // n_slots
            for slot, planned in enumerate(slot_budgets):
                # Sessions run to their natural length: what a slot overshoots
                # its plan by comes off the next slots (``carry``); only the
                # tenant's last session is cut, to hit its total exactly.
                left = planned - tenant.carry
                sessions: list[_Session] = []
                while left > 0 and tenant.remaining > 0:
                    visitor = self._pick_visitor(tenant, day, active)
                    session = self._session(tenant, visitor, tenant.remaining)
                    sessions.append(session)
                    left -= len(session[3])
                    tenant.remaining -= len(session[3])
                tenant.carry = -left if left < 0 else 0
                if sessions:
                    slot_ms = day_ms + hour * 3_600_000 + slot * slot_len
                    yield sessions, sorted([slot_ms + int(rand() * slot_len) for _ in sessions])

    def _session(self, tenant: _Tenant, v: _Visitor, limit: int) -> _Session:
        """One session: 1..limit events ``(event_type, user_id, properties)``, in order."""
        rnd = self.rnd
        rand = rnd.random
        out: list[tuple[str, str | None, dict[str, Any]]] = []
        pages = tenant.pages
        n_pages = len(pages)
        base = tenant.base_url
        uid = v.user_id
        sid = f"ses_{rnd.getrandbits(64):016x}"
        bot = v.ua_kind == "bot"

        def record(event_type: str, props: dict[str, Any]) -> None:
            out.append((event_type, uid, props))

        ref = _REFERRERS[bisect.bisect_right(_REF_CUM, rand() * _REF_CUM[-1])][0]
        path, title = pages[0] if rand() < 0.35 else pages[int(rand() * n_pages)]
        utm = _UTM.get(ref, "") if ref and rand() < 0.4 else ""
        record("page_view", {"page_url": f"{base}{path}{utm}", "referrer": ref, "title": title})
        # Session length: geometric; bots crawl longer runs of page views only.
        target = min(limit, 1 + int(rnd.expovariate(1 / (6.0 if bot else 4.2))))
        did_cart = did_conversion = False
        while len(out) < target:
            r = rand()
            if bot:
                path, title = pages[int(rand() * n_pages)]
                record("page_view", {"page_url": base + path, "referrer": None, "title": title})
                continue
            if uid is None:
                if r < 0.035 and limit - len(out) >= 2:
                    # Sign up, then land on the welcome page as the new user.
                    uid = v.user_id = f"usr_{tenant.index:03d}{rnd.getrandbits(48):012x}"
                    method = _SIGNUP_METHODS[bisect.bisect_right(
                        _SIGNUP_CUM, rand() * _SIGNUP_CUM[-1])][0]
                    record("signup", {"method": method, "plan": "free"})
                    path = "/welcome"
                    record("page_view", {"page_url": base + path, "referrer": None,
                                         "title": f"Welcome to {tenant.brand}"})
                    continue
            elif not did_cart and r < 0.11:
                did_cart = True
                cart_total = 0.0
                items = 0
                for _ in range(min(1 + (rand() < 0.3) + (rand() < 0.1), limit - len(out))):
                    sku, pname, price = tenant.products[int(rand() * len(tenant.products))]
                    qty = 1 + (rand() < 0.15)
                    cart_total += price * qty
                    items += qty
                    record("add_to_cart", {"product_id": sku, "product_name": pname,
                                           "price": price, "quantity": qty,
                                           "currency": tenant.currency})
                if len(out) < limit and rand() < 0.42:
                    currency = tenant.currency if rand() < 0.9 else (
                        "USD" if tenant.currency == "EUR" else "EUR")
                    record("purchase", {"order_id": f"ord_{rnd.getrandbits(40):010x}",
                                        "revenue": round(cart_total, 2), "currency": currency,
                                        "items": items,
                                        "payment_method": "card" if rand() < 0.8 else "paypal"})
                continue
            elif not did_conversion and r > 0.985:
                did_conversion = True
                plan, price = _PLANS[int(rand() * len(_PLANS))]
                yearly = rand() < 0.3
                record("conversion", {"goal": "plan_upgrade", "plan": plan,
                                      "billing": "yearly" if yearly else "monthly",
                                      "revenue": round(price * 10 if yearly else price, 2),
                                      "currency": tenant.currency})
                continue
            r = rand()
            if r < 0.36:
                kind, text = _CLICK_TARGETS[int(rand() * len(_CLICK_TARGETS))]
                record("click", {"element": kind, "text": text, "path": path})
            elif r < 0.45:
                q = _SEARCH_QUERIES[int(rand() * len(_SEARCH_QUERIES))]
                record("search", {"query": q, "results": int(rand() * 40)})
            else:
                path, title = pages[int(rand() * n_pages)]
                record("page_view", {"page_url": base + path, "referrer": None, "title": title})
        return v.anonymous_id, sid, v.meta, out


# ---------------------------------------------------------------------------
# Dirty lines
# ---------------------------------------------------------------------------

_BAD_TENANTS = ("../etc", "ACME Corp", "", "tenant/../../root", "-leading-dash", "x" * 80)


def _corrupt(rnd: random.Random, record: dict[str, Any], line: bytes, previous: list[bytes]
             ) -> bytes:
    """A corrupted stand-in for ``line`` (``record`` is its parsed form)."""
    kind = int(rnd.random() * len(DIRTY_KINDS))
    if kind == 6 and not previous:
        kind = 0
    if kind == 0:  # malformed JSON: cut short, or a broken token
        if rnd.random() < 0.5:
            return line[: max(1, int(len(line) * rnd.uniform(0.1, 0.9)))].rstrip(b"\n") + b"\n"
        return line.replace(b'":', b'" ', 1)
    if kind == 1:  # missing event_type
        bad = dict(record)
        del bad["event_type"]
        return _DUMPS(bad, option=_NEWLINE)
    if kind == 2:  # wrong types
        bad = dict(record)
        field, value = (("timestamp", False), ("event_type", 42), ("properties", "oops"),
                        ("event_id", 1234567), ("metadata", [1, 2]))[int(rnd.random() * 5)]
        bad[field] = value
        return _DUMPS(bad, option=_NEWLINE)
    if kind == 3:  # invalid tenant id
        bad = dict(record)
        bad["tenant_id"] = _BAD_TENANTS[int(rnd.random() * len(_BAD_TENANTS))]
        return _DUMPS(bad, option=_NEWLINE)
    if kind == 4:  # invalid UTF-8 inside a string value
        return line.replace(b'"event_type":"', b'"event_type":"\xff\xfe', 1)
    if kind == 5:  # far-future timestamp
        bad = dict(record)
        stamp = record["timestamp"]
        bad["timestamp"] = "2099" + (stamp[4:] if stamp[5:10] != "02-29" else "-02-28" + stamp[10:])
        return _DUMPS(bad, option=_NEWLINE)
    return previous[int(rnd.random() * len(previous))]  # exact duplicate


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------


def _check(name: str, ok: bool, hint: str) -> None:
    if not ok:
        raise ErpError(f"generate: invalid {name}", hint=hint, key=name)


def generate_events(
    out: BinaryIO | str | Path,
    *,
    events: int = 10_000,
    tenants: int = 5,
    days: int = 30,
    seed: int = 42,
    start: date = date(2026, 9, 1),
    dirty: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> GenerateResult:
    """Write ``events`` synthetic NDJSON events to ``out``; the same arguments
    always give the same bytes.

    ``out`` is a path (``.gz`` means gzip; the file appears atomically when
    complete) or a binary stream, which is written to and not closed.
    ``dirty`` in [0, 1] is the share of lines replaced with corrupted ones.
    ``progress`` is called with the number of lines written so far after each
    block.
    """
    _check("events", isinstance(events, int) and events >= 0, "events must be an integer >= 0")
    _check("seed", isinstance(seed, int) and seed >= 0, "seed must be an integer >= 0")
    _check("tenants", isinstance(tenants, int) and 1 <= tenants <= 9999,
           "tenants must be an integer between 1 and 9999")
    _check("days", isinstance(days, int) and days >= 1, "days must be an integer >= 1")
    _check("dirty", isinstance(dirty, (int, float)) and 0.0 <= dirty <= 1.0,
           "dirty is a fraction between 0.0 and 1.0")
    _check("start", isinstance(start, date), "start is a datetime.date")
    names = tenant_names(tenants)

    if isinstance(out, (str, Path)):
        path = Path(out)
        partial = path.with_name(path.name + ".partial")
        try:
            with open(partial, "wb") as raw:
                if path.suffix == ".gz":
                    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=3,
                                       mtime=0) as gz:
                        written = _write(gz, names, events, days, seed, start, dirty, progress)
                else:
                    written = _write(raw, names, events, days, seed, start, dirty, progress)
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        shown = str(path)
    else:
        written = _write(out, names, events, days, seed, start, dirty, progress)
        shown = str(getattr(out, "name", "<stream>"))
    return GenerateResult(path=shown, events=events, bytes=written, tenants=names, start=start,
                          days=days)


def _write(sink: BinaryIO | io.BufferedIOBase, names: list[str], events: int, days: int,
           seed: int, start: date, dirty: float,
           progress: Callable[[int], None] | None) -> int:
    rnd = random.Random(seed)
    ids = np.random.Generator(np.random.PCG64(seed))
    gap_rng = np.random.Generator(np.random.PCG64([seed, 1]))
    world = _World(names, rnd, start, days)

    # Exact events per tenant (Zipf-like), then per tenant per day.
    tenant_totals = _apportion(events, [1.0 / (i + 1) ** 1.1 for i in range(len(names))])
    per_day = [_apportion(total, t.day_weights) for total, t in zip(tenant_totals, world.tenants)]
    for total, tenant in zip(tenant_totals, world.tenants):
        tenant.remaining = total

    # Dirty lines: exactly round(dirty * events), picked by selection sampling.
    dirty_rnd = random.Random(seed * 7919 + 1)
    to_corrupt = round(dirty * events)
    recent: list[bytes] = []

    written = 0
    count = 0
    pending: list[bytes] = []
    pending_bytes = 0
    dumps = _DUMPS
    opt = _NEWLINE

    def emit(sessions: list[tuple[str, _Session]], starts: list[int], lengths: list[int]
             ) -> None:
        nonlocal count, to_corrupt, pending_bytes
        # Seconds to minutes between events in a session: an event's time is
        # its session's start plus the running sum of gaps since then.
        n = sum(lengths)
        lens = np.array(lengths, dtype=np.int64)
        first = np.cumsum(lens) - lens
        gaps = (400 + gap_rng.exponential(28_000.0, n)).astype(np.int64)
        gaps[first] = 0
        running = np.cumsum(gaps)
        stamps = np.repeat(np.array(starts, dtype=np.int64) - running[first], lens) + running
        lines = []
        append = lines.append
        event_ids = iter(_uuid_strings(ids, n))
        iso = iter(_iso_ms(stamps))
        for tenant_id, (aid, sid, meta, steps) in sessions:
            for event_type, uid, props in steps:
                append(dumps({"event_id": next(event_ids), "tenant_id": tenant_id,
                              "event_type": event_type, "timestamp": next(iso),
                              "user_id": uid, "anonymous_id": aid, "session_id": sid,
                              "properties": props, "metadata": meta}, option=opt))
        if to_corrupt:
            remaining = events - count
            for i, line in enumerate(lines):
                if to_corrupt and dirty_rnd.random() * (remaining - i) < to_corrupt:
                    lines[i] = _corrupt(dirty_rnd, orjson.loads(line), line, recent)
                    to_corrupt -= 1
                elif len(recent) < 64:
                    recent.append(line)
                elif dirty_rnd.random() < 0.01:
                    recent[int(dirty_rnd.random() * 64)] = line
        block = b"".join(lines)
        pending.append(block)
        pending_bytes += len(block)
        count += n
        if pending_bytes >= _WRITE_BYTES:
            write()

    def write() -> None:
        nonlocal written, pending_bytes
        if pending:
            sink.write(b"".join(pending))
            written += pending_bytes
            pending.clear()
            pending_bytes = 0
            if progress is not None:
                progress(count)

    batch: list[tuple[str, _Session]] = []
    batch_starts: list[int] = []
    batch_lengths: list[int] = []
    batch_events = 0
    for day in range(days):
        for tenant, budgets in zip(world.tenants, per_day):
            for sessions, starts in world.day_events(tenant, day, budgets[day]):
                for session in sessions:
                    batch.append((tenant.name, session))
                    batch_lengths.append(len(session[3]))
                batch_starts.extend(starts)
                batch_events += sum(batch_lengths[-len(sessions):])
                if batch_events >= _BATCH_EVENTS:
                    emit(batch, batch_starts, batch_lengths)
                    batch, batch_starts, batch_lengths, batch_events = [], [], [], 0
    if batch:
        emit(batch, batch_starts, batch_lengths)
    write()
    return written
