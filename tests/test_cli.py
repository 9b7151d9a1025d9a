"""The command line: help with examples on every command, ``--json`` that
parses, documented exit codes, and ``erp demo --dir`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from conftest import event, read_events, write_ndjson
from erp.cli.main import app

runner = CliRunner()


def leaf_commands():
    """Every runnable command path, e.g. ['ingest'], ['config', 'show']."""
    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, path + [name])
        else:
            yield path, cmd
    return list(walk(get_command(app), []))


COMMANDS = leaf_commands()


def erp(*args: str, cwd: Path, input: bytes | None = None) -> subprocess.CompletedProcess:
    """The real entry point (``main()``), as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    return subprocess.run([sys.executable, "-m", "erp.cli.main", *args], cwd=cwd, env=env, input=input,
                          capture_output=True, timeout=120)


# --- help -----------------------------------------------------------------------------------

def test_root_help_lists_the_commands_and_exit_codes(clean_env):
    res = runner.invoke(app, ["--help"], terminal_width=200)
    assert res.exit_code == 0
    for name in ("ingest", "demo", "generate", "compact", "config", "tenants"):
        assert name in res.stdout
    assert "Exit codes" in res.stdout and "erp demo" in res.stdout


def test_erp_alone_shows_help_and_exits_0(tmp_path):
    proc = erp(cwd=tmp_path)
    assert proc.returncode == 0
    assert b"ingest" in proc.stdout + proc.stderr


def test_entry_module_imports_nothing_heavy():
    """Parser processes import the main module again (multiprocessing's fork
    server): it must not pull in the CLI app, Polars or Arrow."""
    code = ("import sys, erp.cli.main; "
            "print(sorted(m for m in ('typer', 'rich', 'polars', 'pyarrow', 'erp.cli.app') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"



def test_help_loads_no_engine():
    """`erp --help` and a command's --help load the CLI only: the engines
    (Polars, Arrow, DuckDB, Jinja2, the collector's web stack) load when a
    command runs (they took `erp --help` from ~0.2 to ~0.7 s)."""
    heavy = ("polars", "pyarrow", "numpy", "duckdb", "jinja2", "fastapi", "uvicorn", "erp.reports.render")
    code = ("import sys\nfrom erp.cli.app import app\n"
            "for args in (['--help'], ['ingest', '--help'], ['build-reports', '--help'], ['collect', '--help']):\n"
            "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr

def test_version(clean_env):
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("erp ")


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_with_an_example_and_takes_json(clean_env, path):
    res = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "Example:" in res.stdout, f"`erp {' '.join(path)} --help` has no Example: line"
    example = res.stdout.split("Example:", 1)[1].strip().splitlines()[0]
    assert f"erp {path[0]}" in example  # the example runs this very command
    cmd = dict((tuple(p), c) for p, c in COMMANDS)[tuple(path)]
    assert "--json" in [o for p in cmd.params for o in p.opts], f"`erp {' '.join(path)}` has no --json"


# --- --json -----------------------------------------------------------------------------------

def json_of(res) -> dict:
    assert res.stdout.strip(), res.output
    return json.loads(res.stdout)


def test_json_output_of_the_lake_commands_parses(clean_env):
    tmp = clean_env
    lake = str(tmp / "lake")
    res = runner.invoke(app, ["generate", str(tmp / "g.ndjson"), "--events", "300", "--tenants", "2", "--json"])
    assert res.exit_code == 0, res.output
    gen = json_of(res)
    assert (gen["ok"], gen["events"], gen["path"]) == (True, 300, str(tmp / "g.ndjson"))

    res = runner.invoke(app, ["ingest", str(tmp / "g.ndjson"), "--lake", lake, "--json", "--workers", "1"])
    assert res.exit_code == 0, res.output
    ing = json_of(res)
    assert ing["ok"] is True and ing["lines"] == 300 and ing["accepted"] + ing["duplicates"] + ing["rejected"] == 300
    assert set(ing) >= {"batch_id", "lake", "tenants", "sources", "seconds", "commits"}
    assert read_events(lake).height == ing["accepted"]

    res = runner.invoke(app, ["compact", "--lake", lake, "--json"])
    assert res.exit_code == 0, res.output
    comp = json_of(res)
    assert comp["ok"] is True and "partitions_compacted" in comp

    res = runner.invoke(app, ["config", "show", "--json", "--lake", lake])
    assert res.exit_code == 0, res.output
    assert json_of(res)["settings"]["lake"]["value"] == lake

    res = runner.invoke(app, ["tenants", "key", "--tenant", "acme", "--json"])
    assert res.exit_code == 0, res.output
    key = json_of(res)
    assert key["tenant_id"] == "acme" and key["hash"].startswith("sha256:") and key["key"].startswith("erp_")

    res = runner.invoke(app, ["tenants", "list", "--json"])
    assert res.exit_code == 0, res.output
    assert json_of(res) == {"ok": True, "tenants": []}


def test_json_errors_are_json_too(clean_env):
    res = runner.invoke(app, ["ingest", "missing.ndjson", "--lake", "lake", "--json"])
    assert res.exit_code == 1
    out = json_of(res)
    assert out["ok"] is False and out["error"] == "InputError" and "missing.ndjson" in out["message"]
    res = runner.invoke(app, ["tenants", "key", "--tenant", "Not Valid", "--json"])
    assert res.exit_code == 1 and json_of(res)["error"] == "TenantError"


# --- exit codes -------------------------------------------------------------------------------

def test_exit_0_ok_and_1_for_user_problems(clean_env):
    tmp = clean_env
    src = write_ndjson(tmp / "in.ndjson", [event()])
    assert runner.invoke(app, ["ingest", str(src), "--lake", "lake", "--workers", "1"]).exit_code == 0
    # a missing input, a bad config, a bad tenant: all the user's to fix, each saying how
    res = runner.invoke(app, ["ingest", "nope.ndjson", "--lake", "lake"])
    assert res.exit_code == 1 and "input not found" in res.stderr and "hint" in res.stderr
    (tmp / "erp.yaml").write_text("ingest:\n  wrkers: 2\n")
    res = runner.invoke(app, ["ingest", str(src)])
    assert res.exit_code == 1 and "erp.yaml:2" in res.stderr and "workers" in res.stderr
    (tmp / "erp.yaml").unlink()
    res = runner.invoke(app, ["ingest", str(src), "--tenant", "../x"])
    assert res.exit_code == 1 and "invalid tenant id" in res.stderr
    assert "Traceback" not in res.output


def test_usage_errors_exit_1_through_the_real_entry_point(tmp_path):
    """Click's own usage errors would exit 2, the code kept for internal errors;
    ``main()`` maps them to 1."""
    proc = erp("ingest", "x.ndjson", "--no-such-flag", cwd=tmp_path)
    assert proc.returncode == 1 and b"--no-such-flag" in proc.stderr
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize("damage", ["ledger", "dedup", "intent"])
def test_a_damaged_lake_state_file_is_exit_1_naming_it_not_an_internal_error(clean_env, damage):
    """Exit 2 is kept for bugs; a state file damaged from outside is a lake
    problem the user can fix, so it is exit 1 with the file and a hint."""
    tmp = clean_env
    src = write_ndjson(tmp / "in.ndjson", [event()])
    assert runner.invoke(app, ["ingest", str(src), "--lake", "lake", "--workers", "1"]).exit_code == 0
    state = tmp / "lake" / "_state"
    if damage == "ledger":
        victim = next((state / "ledger").glob("*.ndjson"))
        victim.write_bytes(victim.read_bytes() + b"{broken\n")
    elif damage == "dedup":
        victim = next((state / "dedup").rglob("*.parquet"))
        victim.write_bytes(b"not parquet")
    else:
        victim = state / "commits" / "20200101T000000000000Z-deadbeef-0000.json"
        victim.parent.mkdir(parents=True, exist_ok=True)
        victim.write_bytes(b'{"commit": ')
    src2 = write_ndjson(tmp / "in2.ndjson", [event()])
    res = runner.invoke(app, ["ingest", str(src2), "--lake", "lake", "--json", "--workers", "1"])
    assert res.exit_code == 1, res.output
    out = json_of(res)
    assert out["error"] == "LakeError" and victim.name in out["message"] and out["hint"]
    assert "internal error" not in res.stderr


# --- erp demo -----------------------------------------------------------------------------------

def test_demo_end_to_end(tmp_path):
    demo_dir = tmp_path / "demo"
    proc = erp("demo", "--dir", str(demo_dir), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    ing, lake = out["ingest"], out["lake"]
    assert ing["lake"] == str(demo_dir / "lake")
    assert ing["accepted"] > 1000 and ing["rejected"] > 0  # the sample has deliberately bad lines
    assert ing["accepted"] + ing["rejected"] + ing["duplicates"] + ing["blank"] == ing["lines"]
    assert lake["events"] == ing["accepted"] == read_events(demo_dir / "lake").height
    assert len([t for t, c in lake["tenants"].items() if c["events"]]) >= 3
    # rolled up and built: one bundle per tenant with events and shipped report
    assert out["rollup"]["partitions_rebuilt"] == out["rollup"]["partitions_checked"] > 0
    tenants = {t for t, c in lake["tenants"].items() if c["events"]}
    bundles = {(b["tenant_id"], b["report_id"]) for b in out["reports"]["bundles"]}
    assert bundles == {(t, r) for t in tenants for r in ("traffic", "conversion", "engagement")}
    for t, r in bundles:
        bundle = demo_dir / "dist" / t / r
        data = json.loads((bundle / "data.json").read_text())
        assert data["tenant_id"] == t and data["widgets"]
        page = (bundle / "index.html").read_text()
        for w in data["widgets"]:  # every widget of the report is on its page
            assert f'data-widget-id="{w["widget_id"]}"' in page, (t, r, w["widget_id"])
    assert (demo_dir / "dist" / "index.html").is_file() and (demo_dir / "dist" / "manifest.json").is_file()
    # nothing outside --dir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]

    # the human form shows what landed; a second run skips what is already in
    res = runner.invoke(app, ["demo", "--dir", str(demo_dir)], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "what the lake holds" in text and "skipped" in text and "acme" in text
    assert read_events(demo_dir / "lake").height == ing["accepted"]
    assert "bundles in" in text and "0 file(s) written" in text  # nothing changed, nothing rewritten


def test_a_second_writer_on_the_same_lake_exits_1(clean_env):
    import fcntl

    tmp = clean_env
    src = write_ndjson(tmp / "in.ndjson", [event()])
    lock = tmp / "lake" / "_state" / "ingest.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:  # another erp ingest holds the lake
        fcntl.flock(held, fcntl.LOCK_EX)
        res = runner.invoke(app, ["ingest", str(src), "--lake", "lake", "--json", "--workers", "1"])
        assert res.exit_code == 1, res.output
        out = json_of(res)
        assert out["error"] == "LakeError" and "another erp ingest is running" in out["message"]
        assert "cron" in out["hint"]
        res = runner.invoke(app, ["compact", "--lake", "lake", "--json"])
        assert res.exit_code == 1 and json_of(res)["error"] == "LakeError"
    assert not (tmp / "lake" / "events").exists()
    res = runner.invoke(app, ["ingest", str(src), "--lake", "lake", "--json", "--workers", "1"])
    assert res.exit_code == 0 and json_of(res)["accepted"] == 1
