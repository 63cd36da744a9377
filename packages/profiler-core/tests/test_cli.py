"""The profiler command as a person uses it: real subprocesses, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.pop("PROFILER_CONNECTION_STRING", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "xprofiler.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/traces.sqlite3"


@pytest.fixture
def stored(store: str) -> list[list[dict]]:
    drv = load_driver(store)
    traces = [
        make_trace(3, services=["api", "worker"], name="wsgi"),
        make_trace(2, service="api", name="cron", error_at=1),
    ]
    for t in traces:
        drv.notify(t)
    drv.close()
    return traces


def test_show_prints_the_tree_with_timings_and_stats(store: str, stored: list) -> None:
    base_id = stored[0][0]["base_id"]
    res = run("trace", "show", base_id, "-c", store)
    assert res.returncode == 0, res.stderr
    assert f"trace {base_id}" in res.stdout
    assert "3 spans" in res.stdout
    assert "api, worker" in res.stdout
    for name in ("wsgi", "wsgi1", "wsgi2"):
        assert name in res.stdout
    assert "per category (share" in res.stdout
    # nesting is visible: each deeper span is indented further
    lines = [ln for ln in res.stdout.splitlines() if "wsgi" in ln and "[" in ln]
    indents = [len(ln) - len(ln.lstrip(" │|`└├─-")) for ln in lines]
    assert indents == sorted(indents) and len(set(indents)) == 3


def test_show_error_trace_names_the_exception(store: str, stored: list) -> None:
    res = run("trace", "show", stored[1][0]["base_id"], "-c", store)
    assert res.returncode == 0
    assert "ERROR ValueError: boom" in res.stdout


def test_show_json_is_the_report_schema(store: str, stored: list) -> None:
    base_id = stored[0][0]["base_id"]
    res = run("trace", "show", base_id, "--json", "-c", store)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["schema"] == 1
    assert data["base_id"] == base_id
    assert data["span_count"] == 3
    assert data["children"][0]["children"][0]["name"] == "wsgi1"
    assert isinstance(data["duration"], int)


def test_show_to_a_file(store: str, stored: list, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = run("trace", "show", stored[0][0]["base_id"], "--json", "--out", str(out), "-c", store)
    assert res.returncode == 0
    assert json.loads(out.read_text())["span_count"] == 3


def test_unknown_trace_exits_3(store: str, stored: list) -> None:
    res = run("trace", "show", "0123456789abcdef", "-c", store)
    assert res.returncode == 3
    assert "no trace 0123456789abcdef" in res.stderr


def test_malformed_trace_id_exits_2(store: str) -> None:
    res = run("trace", "show", "../../etc/passwd", "-c", store)
    assert res.returncode == 2
    assert "bad trace id" in res.stderr


def test_bad_connection_string_exits_2_without_the_password() -> None:
    res = run("trace", "list", "-c", "mongodb://user:hunter2@host:notaport/db")
    assert res.returncode == 2
    assert "port must be a number" in res.stderr
    assert "hunter2" not in res.stderr + res.stdout


def test_missing_driver_of_ours_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from xprofiler.core import cli, registry

    # As if only core were installed, whatever this environment holds.
    monkeypatch.setattr(registry, "_scan", lambda: {})
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(registry, "_manual", {})
    code = cli.main(["trace", "list", "-c", "influxdb://u:hunter2@127.0.0.1:1/db"])
    err = capsys.readouterr().err
    assert code == 5
    assert "pip install 'profiler-core[influxdb]'" in err
    assert "hunter2" not in err


def test_unknown_scheme_lists_installed_ones() -> None:
    res = run("trace", "list", "-c", "nosuchstore://x")
    assert res.returncode == 5
    assert "no driver for scheme 'nosuchstore'" in res.stderr
    assert "sqlite" in res.stderr and "memory" in res.stderr


def test_unreachable_store_exits_4(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = run("trace", "list", "-c", f"sqlite:///{blocker}/sub/traces.db")
    assert res.returncode == 4
    assert "no sqlite store at" in res.stderr


def test_reading_a_missing_sqlite_store_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "traces.db"
    res = run("trace", "list", "-c", f"sqlite:///{path}")
    assert res.returncode == 4
    assert f"no sqlite store at {path}" in res.stderr
    assert not path.parent.exists()


def test_collect_without_the_messaging_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from xprofiler.core import cli

    monkeypatch.setattr(cli, "_load_plugins", lambda sub: None)  # as if not installed
    code = cli.main(["collect", "--from", "redis://127.0.0.1/0", "--to", "sqlite:///x.db"])
    assert code == 5
    assert "'profiler-core[messaging]'" in capsys.readouterr().err


def test_list_newest_first_and_filters(store: str, stored: list) -> None:
    res = run("trace", "list", "--json", "-c", store)
    assert res.returncode == 0
    rows = json.loads(res.stdout)
    assert [r["base_id"] for r in rows] == sorted(
        [t[0]["base_id"] for t in stored],
        key=lambda b: -min(p["timestamp"] for t in stored for p in t if p["base_id"] == b),
    )
    res = run("trace", "list", "--errors", "--json", "-c", store)
    assert [r["base_id"] for r in json.loads(res.stdout)] == [stored[1][0]["base_id"]]
    res = run("trace", "list", "--service", "worker", "-c", store)
    assert stored[0][0]["base_id"] in res.stdout
    assert stored[1][0]["base_id"] not in res.stdout
    res = run("trace", "list", "--limit", "0", "-c", store)
    assert res.returncode == 2


def test_list_bad_time_exits_2(store: str) -> None:
    res = run("trace", "list", "--since", "yesterday-ish", "-c", store)
    assert res.returncode == 2
    assert "bad time" in res.stderr


def test_drivers_lists_the_builtin_ones() -> None:
    res = run("drivers", "--json")
    assert res.returncode == 0
    rows = {r["scheme"]: r for r in json.loads(res.stdout)}
    assert rows["sqlite"]["distribution"] == "profiler-core"
    assert rows["sqlite"]["status"] == "ok"
    from xprofiler.core import __version__

    assert rows["memory"]["version"] == __version__


def test_no_command_prints_usage_and_exits_2() -> None:
    res = run()
    assert res.returncode == 2
    assert "usage: profiler" in res.stderr


def test_help_teaches_connection_strings_and_exit_codes() -> None:
    res = run("--help")
    assert res.returncode == 0
    assert "exit codes:" in res.stdout
    assert "PROFILER_CONNECTION_STRING" in res.stdout


def test_environment_variable_selects_the_store(store: str, stored: list) -> None:
    res = run("trace", "list", "--json", env={"PROFILER_CONNECTION_STRING": store})
    assert res.returncode == 0
    assert len(json.loads(res.stdout)) == 2


def test_demo_traces_two_services_into_one_tree(store: str) -> None:
    res = run("demo", "-c", store)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "services: api, inventory" in out
    assert "ERROR LookupError: items not in stock: kiwi" in out
    assert "ERROR KeyError" in out  # the worker's failure, in the worker's span
    assert "0 unfinished" in out
    # the worker's spans hang under the api's http spans: one tree, not two
    base_id = out.split()[1]
    drv = load_driver(store)
    rows = drv.list_traces()
    drv.close()
    assert [r.base_id for r in rows] == [base_id]
    assert set(rows[0].services) == {"api", "inventory"}


def test_maintenance_on_a_store_without_housekeeping(store: str, stored: list) -> None:
    res = run("maintenance", "-c", store)
    assert res.returncode == 0
    assert "needs no maintenance" in res.stdout
    res = run("maintenance", "--retention-days", "7", "-c", store)
    assert res.returncode == 2
    assert "no retention by age" in res.stderr


def test_serve_stops_cleanly_on_sigterm(store: str, stored: list) -> None:
    import signal
    import urllib.request

    env = dict(os.environ)
    env.pop("PROFILER_CONNECTION_STRING", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xprofiler.core.cli", "serve", "--port", "0", "-c", store],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving traces from" in line and "127.0.0.1" in line
        url = line.split(" on ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/stats", timeout=10) as resp:  # noqa: S310
            assert json.loads(resp.read())["traces"] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "profiler: stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
