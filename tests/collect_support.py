"""Helpers for the collector tests: a project folder with API keys, a real
``erp collect`` process on 127.0.0.1, the drain, and small tmpfs mounts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
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
