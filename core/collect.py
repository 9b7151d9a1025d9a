"""``erp collect``: the HTTP collector (FastAPI on uvicorn).

A request is authenticated (the tenant comes from its API key), its body is
read (at most 20 MB after gzip decompression), each event is measured and
checked, and its events are appended to the tenant's spool segment. The answer
is sent only after the spool has synced them to disk (``core/spool.py``). When
the spool cannot be written the answer is 503 with ``Retry-After``; nothing is
held in memory.

Endpoints: the native API (``POST /api/v1/events``), Segment-compatible
(``/v1/batch``, ``/v1/track``, ``/v1/page``, ``/v1/identify``, ``/v1/screen``),
PostHog-compatible (``/batch/``, ``/capture/``, ``/e/``), ``GET /healthz``,
``GET /metrics`` (Prometheus), and the OpenAPI description (``/openapi.json``,
``/docs``). See docs/collect.md.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import socket
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from erp.core.collect_formats import (
    MAX_BODY_BYTES, Parsed, RequestError, RequestInfo, _too_large, decode_body, json_schema, parse_native,
    parse_posthog, parse_segment, safe_dumps,
)
from erp.core.collect_models import (
    NativeBatchDoc, NativeEvent, PostHogBatchDoc, PostHogEvent, SegmentBatchDoc, SegmentMessage,
)
from erp.core.collect_metrics import Metrics
from erp.core.config import Config
from erp.core.errors import ConfigError
from erp.core.spool import Spool, SpoolSettings, SpoolUnavailable
from erp.core.tenants import hash_api_key


@dataclass(frozen=True)
class CollectSettings:
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    retry_after_seconds: int = 5
    """Sent with 503 answers when the spool cannot be written."""
    fault_500_every: int = 0
    """Test-only fault injection: answer every n-th event request with 500 *after*
    its events were spooled (so a client's retry sends them again). 0 = off."""


@dataclass
class StartInfo:
    spool: str
    recovered: int


class KeyIndex:
    """API key -> tenant id, looked up by the stored sha256 hash."""

    def __init__(self, cfg: Config) -> None:
        self._by_hash = {k.hash: t.tenant_id for t in cfg.tenants.values() for k in t.api_keys}
        self._tenants = cfg.tenants

    def tenant(self, key: str | None) -> str | None:
        if not key:
            return None
        tid = self._by_hash.get(hash_api_key(key))
        if tid is None or not self._tenants[tid].key_matches(key):
            return None
        return tid

    def __len__(self) -> int:
        return len(self._by_hash)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Exchange:
    """One HTTP request, independent of the framework that received it."""

    headers: dict[str, str]  # lower-case names
    client_ip: str | None
    chunks: Callable[[], AsyncIterator[bytes]]


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _bearer(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise RequestError(401, "unauthorized", "the Basic Authorization header is not valid base64",
                               "send Authorization: Basic base64(<write key>:)") from None
        return user or None
    return None


_AUTH_HINT = {
    "native": "send Authorization: Bearer <API key>; `erp tenants key --tenant <t>` creates one",
    "segment": "set the SDK's write key to the tenant's erp API key (HTTP Basic user, or body writeKey)",
    "posthog": "set the SDK's project API key to the tenant's erp API key (body api_key)",
}


class Collector:
    """Authenticate, read, check, spool, answer: the work behind every event endpoint."""

    def __init__(self, cfg: Config, settings: CollectSettings, spool: Spool) -> None:
        self.settings = settings
        self.keys = KeyIndex(cfg)
        self.metrics = Metrics()
        self.spool = spool
        self._counter = itertools.count(1)
        self.routes: dict[str, tuple[str, Callable[[bytes, RequestInfo], Parsed],
                                     Callable[[Parsed, RequestInfo], Answer]]] = {
            "/api/v1/events": ("native", parse_native, self._native_answer)}
        for call in ("batch", "track", "page", "identify", "screen"):
            self.routes[f"/v1/{call}"] = ("segment", functools.partial(_segment, call=call), self._segment_answer)
        for path in ("/batch/", "/capture/", "/e/"):
            self.routes[path] = ("posthog", parse_posthog, self._posthog_answer)

    async def _read_body(self, ex: Exchange) -> bytes:
        cl = ex.headers.get("content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                raise RequestError(400, "bad_request", "Content-Length is not a number") from None
            if n > MAX_BODY_BYTES:
                raise _too_large(n, MAX_BODY_BYTES)
        parts, total = [], 0
        async for chunk in ex.chunks():
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise _too_large(None, MAX_BODY_BYTES)
            parts.append(chunk)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        encoding = ex.headers.get("content-encoding")
        body = decode_body(body, encoding)
        self.metrics.body_read("gzip" if encoding and "gzip" in encoding.lower() else (encoding or "identity")[:20])
        if not body.strip():
            raise RequestError(400, "empty_body", "the request body is empty", "send a JSON document")
        return body

    async def handle(self, path: str, ex: Exchange) -> Answer:
        dialect, parse, answer = self.routes[path]
        t0 = time.perf_counter()
        status, accepted, rejected = 500, 0, Counter()
        try:
            header_key = _bearer(ex.headers)
            tenant = None
            if dialect == "native":
                if header_key is None:
                    raise RequestError(401, "unauthorized", "missing API key", _AUTH_HINT[dialect])
                tenant = self.keys.tenant(header_key)
                if tenant is None:
                    raise RequestError(401, "unauthorized", "the API key is not valid", _AUTH_HINT[dialect])
                claimed = ex.headers.get("x-tenant-id")
                if claimed is not None and claimed != tenant:
                    raise RequestError(403, "forbidden", "X-Tenant-ID does not match the API key's tenant",
                                       "drop the X-Tenant-ID header or use that tenant's key")
            req = RequestInfo(received_at=_now_iso(), ip=ex.client_ip, user_agent=ex.headers.get("user-agent"),
                              source=f"collect POST {path}")
            parsed = parse(await self._read_body(ex), req)
            if tenant is None:
                key = header_key or parsed.key
                if not key:
                    raise RequestError(401, "unauthorized", "missing API key", _AUTH_HINT[dialect])
                tenant = self.keys.tenant(key)
                if tenant is None:
                    raise RequestError(401, "unauthorized", "the API key is not valid", _AUTH_HINT[dialect])
            if parsed.claimed_tenants - {tenant}:
                raise RequestError(403, "forbidden", "an event names a tenant_id other than the API key's tenant",
                                   "drop tenant_id from the events (the key decides the tenant) or use "
                                   "that tenant's key")
            events, rows = parsed.encode(tenant)
            await self.spool.append_async(tenant, events, rows)
            accepted = len(parsed.records)
            rejected = Counter(r["code"] for r in parsed.rejected)
            if self.settings.fault_500_every and next(self._counter) % self.settings.fault_500_every == 0:
                status = 500
                return Answer(500, {"error": "injected_fault", "message": "fault injection (test setting)"})
            result = answer(parsed, req)
            status = result.status
            return result
        except RequestError as exc:
            status = exc.status
            headers = {"WWW-Authenticate": 'Bearer realm="erp"'} if exc.status == 401 else {}
            return Answer(exc.status, exc.body(), headers)
        except SpoolUnavailable as exc:
            status = 503
            return Answer(503, {"error": "spool_unavailable", "message": exc.message, "hint": exc.hint or ""},
                          {"Retry-After": str(self.settings.retry_after_seconds)})
        finally:
            self.metrics.observe(path, status, time.perf_counter() - t0, accepted, rejected)

    # --- answers ----------------------------------------------------------------------

    @staticmethod
    def _native_answer(p: Parsed, req: RequestInfo) -> Answer:
        if p.single:
            if p.rejected:
                r = p.rejected[0]
                return Answer(202, {"event_id": None, "status": "rejected", "reason": r["code"],
                                    "message": r["message"], "timestamp": req.received_at})
            return Answer(202, {"event_id": p.ids[0], "status": "accepted", "timestamp": req.received_at})
        return Answer(202, {"event_ids": p.ids, "status": "accepted", "accepted": len(p.records),
                            "rejected": p.summary(), "timestamp": req.received_at})

    @staticmethod
    def _segment_answer(p: Parsed, req: RequestInfo) -> Answer:
        return Answer(200, {"success": True, "accepted": len(p.records), "rejected": p.summary()})

    @staticmethod
    def _posthog_answer(p: Parsed, req: RequestInfo) -> Answer:
        return Answer(200, {"status": 1, "accepted": len(p.records), "rejected": p.summary()})


def _segment(body: bytes, req: RequestInfo, *, call: str) -> Parsed:
    return parse_segment(body, req, call)


def _to_response(a: Answer) -> Response:
    return Response(safe_dumps(a.body), status_code=a.status, media_type="application/json",
                    headers=a.headers or None)


class FastPath:
    """An ASGI front: POSTs to the event endpoints go straight to ``Collector``
    (no routing or request objects: ~2-3x the requests per second of going
    through FastAPI); everything else (``/healthz``, ``/metrics``, ``/docs``,
    ``/openapi.json``, lifespan) goes to the FastAPI app, which also documents
    the event endpoints and serves them the same way when mounted elsewhere."""

    def __init__(self, app: FastAPI, collector: "Collector") -> None:
        self.app = app
        self.collector = collector
        self.state = app.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.collector.routes:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise RequestError(400, "client_disconnected", "the client went away")
                yield msg.get("body", b"")
                if not msg.get("more_body"):
                    return

        client = scope.get("client")
        a = await self.collector.handle(scope["path"], Exchange(headers, client[0] if client else None, chunks))
        body = safe_dumps(a.body)
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        hdrs += [(k.lower().encode(), v.encode()) for k, v in a.headers.items()]
        await send({"type": "http.response.start", "status": a.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})


def create_app(cfg: Config, settings: CollectSettings | None = None, *, spool: Spool | None = None,
               on_start: Callable[[StartInfo], None] | None = None) -> FastPath:
    """The collector as an ASGI app. Without ``spool`` it opens ``cfg.settings.spool``
    on startup and seals its segments on shutdown."""
    settings = settings or CollectSettings()
    own_spool = spool is None
    sp = spool or Spool(cfg.settings.spool, settings.spool)
    col = Collector(cfg, settings, sp)
    keys, metrics = col.keys, col.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if own_spool:
            recovered = sp.start()
            if on_start:
                on_start(StartInfo(str(sp.root), len(recovered)))
        try:
            yield
        finally:
            if own_spool:
                sp.close()

    app = FastAPI(title="erp collector", version="1", lifespan=lifespan,
                  description="Receives product events over HTTP and acknowledges each only after it is "
                              "durably in the spool. See docs/collect.md.")
    app.state.spool = sp
    app.state.metrics = metrics

    def via_fastapi(path: str) -> Callable[[Request], Any]:
        async def route(request: Request) -> Response:
            ex = Exchange({k.lower(): v for k, v in request.headers.items()},
                          request.client.host if request.client else None, request.stream)
            return _to_response(await col.handle(path, ex))
        route.__name__ = "collect_" + path.strip("/").replace("/", "_")
        return route

    # --- routes -------------------------------------------------------------------------

    def body_doc(*types: Any) -> dict[str, Any]:
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "anyOf": [{"$ref": f"#/components/schemas/{t.__name__}"} for t in types]}}}}}

    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    errors = {400: {"description": "Malformed JSON or an invalid single event", **err},
              401: {"description": "Missing or invalid API key", **err},
              413: {"description": "Body over 20 MB after decompression", **err},
              415: {"description": "Unsupported Content-Encoding", **err},
              503: {"description": "The spool cannot be written; retry after Retry-After seconds", **err}}

    app.post("/api/v1/events", status_code=202, tags=["native"],
             summary="Send one event or a batch {\"events\": [...]}",
             openapi_extra=body_doc(NativeEvent, NativeBatchDoc),
             responses={202: {"description": "Durably accepted"},
                        403: {"description": "X-Tenant-ID or tenant_id does not match the key", **err},
                        **errors})(via_fastapi("/api/v1/events"))
    for call in ("batch", "track", "page", "identify", "screen"):
        app.post(f"/v1/{call}", tags=["segment"], summary=f"Segment-compatible {call}",
                 openapi_extra=body_doc(SegmentBatchDoc if call == "batch" else SegmentMessage),
                 responses={200: {"description": "Durably accepted"}, **errors})(via_fastapi(f"/v1/{call}"))
    for path in ("/batch/", "/capture/", "/e/"):
        app.post(path, tags=["posthog"], summary=f"PostHog-compatible {path}",
                 openapi_extra=body_doc(PostHogBatchDoc, PostHogEvent),
                 responses={200: {"description": "Durably accepted"}, **errors})(via_fastapi(path))

    @app.get("/healthz", tags=["operations"], summary="Liveness: 200 when the spool writer runs")
    async def healthz() -> Response:
        alive = sp._thread is not None and sp._thread.is_alive()
        return _json({"status": "ok" if alive else "down", "spool": str(sp.root),
                      "api_keys": len(keys)}, 200 if alive else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text format)")
    async def prom() -> Response:
        st = sp.stats
        text = metrics.render(
            gauges=[("erp_spool_bytes", "Bytes of all segments in the spool (open and sealed).",
                     float(sp.disk_bytes())),
                    ("erp_spool_oldest_unsealed_segment_age_seconds",
                     "Age of the oldest open (unsealed) segment; 0 when none.", sp.oldest_open_age())],
            counters=[("erp_spool_syncs_total", "fdatasync calls (one per segment per group commit).",
                       st.syncs),
                      ("erp_spool_appends_total", "Requests made durable.", st.appends),
                      ("erp_spool_bytes_written_total", "Bytes appended to the spool.", st.bytes_written),
                      ("erp_spool_segments_sealed_total", "Segments sealed by size, age or shutdown.",
                       st.segments_sealed),
                      ("erp_spool_write_errors_total", "Failed segment writes (answered 503).",
                       st.write_errors)])
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for tp in (NativeEvent, NativeBatchDoc, SegmentMessage, SegmentBatchDoc, PostHogEvent, PostHogBatchDoc):
            comps.update(json_schema(tp)["components"])
        comps["ErrorBody"] = {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string"}, "message": {"type": "string"}, "hint": {"type": "string"}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return FastPath(app, col)


def bind(host: str, port: int) -> socket.socket:
    """Listen on host:port, or raise ConfigError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", key="--host/--port",
                          hint="choose a free port with --port, or stop the process using it") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(cfg: Config, *, host: str = "127.0.0.1", port: int = 8080, settings: CollectSettings | None = None,
          on_start: Callable[[StartInfo], None] | None = None) -> None:
    """Run the collector until SIGINT/SIGTERM; on the way out the spool seals its segments."""
    import importlib.util

    import uvicorn

    if "://" in cfg.settings.spool:
        raise ConfigError(f"the spool must be a local folder, not {cfg.settings.spool!r}", key="spool",
                          hint="set `spool:` in erp.yaml to a folder on this machine's disk")
    settings = settings or CollectSettings()
    sock = bind(host, port)
    spool = Spool(cfg.settings.spool, settings.spool)
    try:
        recovered = spool.start()  # raises SpoolUnavailable when the folder cannot be made
    except BaseException:
        sock.close()
        raise
    app = create_app(cfg, settings, spool=spool)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=10,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        backlog=2048, server_header=False)
    if on_start:
        on_start(StartInfo(str(spool.root), len(recovered)))
    # The objects loaded so far live as long as the process: keep them out of the
    # cyclic GC's full collections, which would otherwise add tens of ms to a
    # request now and then (p99).
    import gc

    gc.collect()
    gc.freeze()
    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # SIGINT/SIGTERM mean "stop gracefully": do not re-raise them after the
            # shutdown (uvicorn's default), so the spool is sealed and the exit code is 0
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    try:
        Server(config).run(sockets=[sock])
    finally:
        spool.close()  # finishes queued appends, seals every open segment
        sock.close()


__all__ = ["create_app", "serve", "bind", "CollectSettings", "StartInfo", "KeyIndex"]
