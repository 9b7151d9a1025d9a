"""Writing bundles into ``dist/``: only files whose bytes changed are rewritten, files
a rebuilt bundle no longer has are removed, and ``dist/manifest.json`` and
``dist/index.html`` list every bundle with sha256 content hashes.

Paths are ``<out>/<tenant_id>/<report_id>/<file>``: the tenant id is validated by
``erp.core.tenants.validate_tenant_id`` and the report id and file names match
``[a-z0-9][a-z0-9_-]*`` (plus a fixed extension), so no value can leave ``out``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erp.core.errors import ConfigError, LakeError
from erp.core.tenants import validate_tenant_id
from markupsafe import Markup

from erp.reports.render.bundle import ID_RE, csp_hash, environment, page_style

FILE_RE = re.compile(r"^(index\.html|embed\.html|data\.json|[a-z0-9][a-z0-9_-]{0,62}\.csv)$")
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class BundleEntry:
    tenant_id: str
    report_id: str
    report_name: str
    tenant_name: str
    since: str
    until: str
    files: dict[str, str]  # file name -> "sha256:<hex>"
    bytes: int

    @property
    def path(self) -> str:
        return f"{self.tenant_id}/{self.report_id}"

    def to_json(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "report_id": self.report_id, "report_name": self.report_name,
                "tenant_name": self.tenant_name, "since": self.since, "until": self.until,
                "path": self.path + "/", "bytes": self.bytes, "files": dict(sorted(self.files.items()))}


@dataclass
class WriteStats:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bundle_dir(out: Path, tenant_id: str, report_id: str) -> Path:
    validate_tenant_id(tenant_id)
    if not ID_RE.match(report_id):
        raise ConfigError(f"report id {report_id!r} is not valid", key="report_id")
    return out / tenant_id / report_id


def write_if_changed(path: Path, data: bytes, stats: WriteStats, rel: str) -> None:
    """Write ``data`` atomically unless the file already holds exactly these bytes."""
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            stats.unchanged.append(rel)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise LakeError(f"cannot write {path}: {exc.strerror or exc}", path=path,
                        hint="check that the --out folder is writable and the disk has space") from exc
    stats.written.append(rel)


def read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    """The bundles of an earlier build, by ``tenant/report`` (empty when there is none)."""
    path = out / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    bundles = data.get("bundles") if isinstance(data, dict) else None
    out_map: dict[str, dict[str, Any]] = {}
    for b in bundles if isinstance(bundles, list) else []:
        if isinstance(b, dict) and isinstance(b.get("tenant_id"), str) and isinstance(b.get("report_id"), str):
            out_map[f"{b['tenant_id']}/{b['report_id']}"] = b
    return out_map


def write_bundle(out: Path, tenant_id: str, report_id: str, files: dict[str, bytes], previous: dict[str, Any] | None,
                 stats: WriteStats) -> dict[str, str]:
    """Write one bundle's files; remove files the previous build of it had and this one
    does not. Returns the file hashes."""
    folder = bundle_dir(out, tenant_id, report_id)
    hashes = {}
    for name in sorted(files):
        if not FILE_RE.match(name):
            raise ValueError(f"unexpected bundle file name {name!r}")
        write_if_changed(folder / name, files[name], stats, f"{tenant_id}/{report_id}/{name}")
        hashes[name] = sha256(files[name])
    old = (previous or {}).get("files") or {}
    for name in sorted(set(old) - set(files)):
        if isinstance(name, str) and FILE_RE.match(name):
            p = folder / name
            if p.is_file():
                p.unlink()
                stats.removed.append(f"{tenant_id}/{report_id}/{name}")
    return hashes


def write_index(out: Path, entries: list[BundleEntry], stats: WriteStats) -> None:
    """``manifest.json`` and ``index.html`` for every bundle in ``out``."""
    entries = sorted(entries, key=lambda e: (e.tenant_id, e.report_id))
    manifest = {"version": MANIFEST_VERSION, "bundles": [e.to_json() for e in entries]}
    write_if_changed(out / MANIFEST, (json.dumps(manifest, ensure_ascii=False, indent=1) + "\n").encode("utf-8"),
                     stats, MANIFEST)
    style = page_style()
    html = environment().get_template("bundle/index.html").render(
        entries=entries, style=Markup(style),
        csp=f"default-src 'none'; style-src {csp_hash(style)}; base-uri 'none'; form-action 'none'")
    write_if_changed(out / "index.html", html.encode("utf-8"), stats, "index.html")


def entry_from_manifest(raw: dict[str, Any]) -> BundleEntry | None:
    try:
        return BundleEntry(str(raw["tenant_id"]), str(raw["report_id"]), str(raw.get("report_name", "")),
                           str(raw.get("tenant_name", "")), str(raw.get("since", "")), str(raw.get("until", "")),
                           {str(k): str(v) for k, v in (raw.get("files") or {}).items()}, int(raw.get("bytes", 0)))
    except (KeyError, TypeError, ValueError):
        return None
