"""Helpers for the collector tests: a project folder with API keys, a real
``erp collect`` process on 127.0.0.1, the drain, and small tmpfs mounts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from erp.core.tenants import hash_api_key

KEYS = {"acme": "erp_test_acme_key", "globex": "erp_test_globex_key"}


def write_project(base: Path, *, spool: Path | None = None) -> Path:
    """erp.yaml + tenants.yaml (two tenants with keys) in ``base``; returns erp.yaml."""
    base.mkdir(parents=True, exist_ok=True)
    tenants = {"tenants": [{"tenant_id": t, "api_keys": [{"id": "test", "hash": hash_api_key(k)}]}
                           for t, k in KEYS.items()] + [{"tenant_id": "initech"}]}
    (base / "tenants.yaml").write_text(json.dumps(tenants))
    (base / "erp.yaml").write_text(f"lake: {base / 'lake'}\nspool: {spool or base / 'spool'}\n"
                                   "ingest:\n  workers: 1\n")
    return base / "erp.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}


@dataclass
class Collector:
    """A real ``erp collect`` process."""

    config: Path
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "Collector":
        self.port = free_port()
        cmd = [sys.executable, "-m", "erp.cli.main", "collect", "--host", "127.0.0.1", "--port", str(self.port),
               "--config", str(self.config), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                                     cwd=self.config.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(f"collector exited {self.proc.returncode}: {out.decode()} {err.decode()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("collector did not start in time")

    def stop(self) -> tuple[int, str, str]:
        """SIGTERM (graceful: open segments are sealed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def erp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "erp.cli.main", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=120)


def drain(config: Path) -> dict[str, Any]:
    """``erp ingest --spool --json`` through the real CLI."""
    res = erp("ingest", "--spool", "--config", str(config), "--json", cwd=config.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def require_root_mount() -> None:
    """tmpfs tests need root (mount). Fail under CI, else skip with how to get it."""
    if os.geteuid() != 0 or not Path("/bin/mount").exists() and not Path("/usr/bin/mount").exists():
        msg = "needs root and mount(8) for a small tmpfs: run the tests as root (apt-get install mount)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


class Tmpfs:
    """A tiny tmpfs mounted for one test."""

    def __init__(self, path: Path, size: str) -> None:
        require_root_mount()
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            msg = f"cannot mount a tmpfs ({res.stderr.strip()}): run as root with CAP_SYS_ADMIN"
            if os.environ.get("CI") == "true":
                pytest.fail(msg)
            pytest.skip(msg)

    def remount(self, opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(self.path)], check=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


class ThreadCollector:
    """The same app on a real uvicorn server on 127.0.0.1, run in a thread of the
    test process (fast to start); ``stop`` shuts it down gracefully (segments sealed)."""

    def __init__(self, config: Path, **settings: Any) -> None:
        self.config = config
        self.settings = settings
        self.port = 0
        self.server: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ThreadCollector":
        import uvicorn

        from erp.core.collect import CollectSettings, create_app
        from erp.core.config import load_config
        from erp.core.spool import SpoolSettings

        cfg = load_config(self.config, env={}, cwd=self.config.parent)
        spool_opts = {k: self.settings.pop(k) for k in ("segment_age_seconds", "segment_bytes", "sync")
                      if k in self.settings}
        fastapi_only = self.settings.pop("fastapi_only", False)
        app = create_app(cfg, CollectSettings(spool=SpoolSettings(**spool_opts), **self.settings))
        if fastapi_only:  # serve the event endpoints through FastAPI's own routes
            app = app.app
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on", loop="asyncio"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the in-process collector did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=20)
            self.thread = None


def drain_lib(config: Path) -> dict[str, Any]:
    """The drain through the library (the CLI path is tested separately)."""
    from erp.core.config import load_config
    from erp.core.drain import drain_spool

    res = drain_spool(load_config(config, env={}, cwd=config.parent), workers=1)
    assert not res.failed, res.to_dict()
    return res.to_dict()
