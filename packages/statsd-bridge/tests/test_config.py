from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from statsd_bridge import config as cfg
from statsd_bridge.errors import ConfigError

GOOD = """
[statsd]
host = "127.0.0.1"
port = 8125
prefix = "prod.eu"
max_datagram = 1432

[[sources]]
name = "magneto"
kind = "magnetodb"
url = "http://127.0.0.1"
interval = "250ms"
timeout = "200ms"
headers_env = { "X-Auth-Token" = "MDB_TOKEN" }

[[sources]]
name = "inventory"
kind = "http"
url = "http://user:hunter2@127.0.0.1:9000/stats"
interval = "2h"
jitter = "5s"
auth = { username = "ops", password_env = "INV_PASSWORD" }

[[sources.metrics]]
each = "$.queues[*]"
value = "depth"
name = "queue.{name}.depth"
scale = 0.5

[[sources.metrics]]
value = "$.uptime"
name = "uptime"
type = "timer"
"""

ENV = {"MDB_TOKEN": "tok-secret", "INV_PASSWORD": "pw-secret"}


def test_good_config_loads_with_defaults_and_env_secrets() -> None:
    c = cfg.loads(GOOD, "bridge.toml", ENV)
    assert c.statsd.prefix == "prod.eu" and c.statsd.max_datagram == 1432
    assert c.statsd.protocol == "udp"
    magneto, inv = c.sources
    # MagnetoDB's API port is the default when the URL has none.
    assert magneto.url == "http://127.0.0.1:8480"
    assert magneto.interval == 0.25 and magneto.timeout == 0.2
    assert magneto.headers == {"X-Auth-Token": "tok-secret"}
    assert magneto.prefix == "magnetodb"
    assert inv.interval == 7200 and inv.jitter == 5
    assert inv.timeout == 5.0  # default: min(5s, 80% of the interval)
    assert inv.auth == ("ops", "pw-secret")
    assert inv.prefix == "inventory"
    assert [m.type for m in inv.metrics] == ["gauge", "timer"]
    assert inv.metrics[0].scale == 0.5


def test_repr_and_safe_url_never_show_secrets() -> None:
    c = cfg.loads(GOOD, "bridge.toml", ENV)
    text = repr(c) + repr(c.sources) + " ".join(s.safe_url for s in c.sources)
    for secret in ("tok-secret", "pw-secret", "hunter2"):
        assert secret not in text
    assert "X-Auth-Token" in repr(c.sources[0])


def test_every_problem_is_reported_with_its_location() -> None:
    bad = """
[statsd]
port = 99999
protocol = "sctp"
colour = "blue"

[[sources]]
name = "a"
kind = "magnetodb"
url = "ftp://x"
interval = "10s"
timeout = "12s"

[[sources]]
name = "a"
kind = "http"
url = "http://127.0.0.1/x"
interval = "soon"

[[sources.metrics]]
value = "$.a[*].b"
name = "bad name.{*2}"
type = "histogram"
scale = 0
"""
    with pytest.raises(ConfigError) as info:
        cfg.loads(bad, "bridge.toml", {})
    got = {(p.location, p.message.split(" ")[0]) for p in info.value.problems}
    locations = [p.location for p in info.value.problems]
    assert "statsd.port" in locations
    assert "statsd.protocol" in locations
    assert "statsd.colour" in locations  # unknown keys are typos until shown otherwise
    assert "sources[0] (a).url" in locations
    assert "sources[0] (a).timeout" in locations
    assert "sources[1] (a).interval" in locations
    assert "sources[1] (a).name" in locations  # duplicate name
    assert "sources[1] (a).metrics[0].name" in locations
    assert "sources[1] (a).metrics[0].type" in locations
    assert "sources[1] (a).metrics[0].scale" in locations
    assert len(got) >= 10
    text = str(info.value)
    assert "bridge.toml" in text and "statsd-bridge check" in text


def test_timeout_must_be_below_interval() -> None:
    text = GOOD.replace('timeout = "200ms"', 'timeout = "250ms"')
    with pytest.raises(ConfigError) as info:
        cfg.loads(text, "b.toml", ENV)
    [p] = info.value.problems
    assert p.location == "sources[0] (magneto).timeout"
    assert "below the interval" in p.message


def test_missing_env_secret_is_a_problem_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.loads(GOOD, "b.toml", {"MDB_TOKEN": "x"})
    [p] = info.value.problems
    assert p.location == "sources[1] (inventory).auth.password_env"
    assert "INV_PASSWORD" in p.message


def test_toml_syntax_error_reports_line() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.loads("[statsd]\nhost = \n", "b.toml")
    assert "line 2" in str(info.value)


def test_header_values_with_line_breaks_are_refused() -> None:
    text = GOOD.replace(
        'headers_env = { "X-Auth-Token" = "MDB_TOKEN" }',
        'headers = { "X-Evil" = "a\\r\\nX-Injected: 1" }',
    )
    with pytest.raises(ConfigError) as info:
        cfg.loads(text, "b.toml", ENV)
    assert [p.location for p in info.value.problems] == ["sources[0] (magneto).headers.X-Evil"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("10s", 10.0), ("1.5m", 90.0), ("2h", 7200.0), (3, 3.0), (0.05, 0.05)],
)
def test_durations(text: object, seconds: float) -> None:
    assert cfg.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-1s", "ten", "5 days", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        cfg.parse_duration(text)


def test_sizes() -> None:
    assert cfg.parse_size("8MiB") == 8 * 1024 * 1024
    assert cfg.parse_size("1MB") == 1_000_000
    assert cfg.parse_size(512) == 512
    with pytest.raises(ValueError):
        cfg.parse_size("lots")


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    env = {**ENV, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "statsd_bridge", "check", "-c"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "OK, 2 source(s)" in ok.stdout
    assert "hunter2" not in ok.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('timeout = "200ms"', 'timeout = "1s"'))
    res = subprocess.run([*run, str(bad)], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2
    assert f"{bad}: sources[0] (magneto).timeout:" in res.stderr

    missing = subprocess.run(
        [*run, str(tmp_path / "nope.toml")], capture_output=True, text=True, env=env, timeout=60
    )
    assert missing.returncode == 2
    assert "cannot read the file" in missing.stderr


def test_example_config_in_readme_is_valid() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    start = text.index("```toml\n") + len("```toml\n")
    example = text[start : text.index("```", start)]
    c = cfg.loads(example, "README example", {"MAGNETODB_TOKEN": "x", "QUEUES_PASSWORD": "y"})
    assert {s.kind for s in c.sources} == {"magnetodb", "profiler", "http"}
