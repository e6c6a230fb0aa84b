"""``kpimon explain`` as operators run it: a subprocess asking a running daemon (also a
subprocess) on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.daemon import REPO, kpimon
from tests.helpers.debian import free_port

RULES = """
kpis:
  - name: constant_load
    owner: platform-team
    unit: percent
    expr: vector(80)
    levels:
      warning: {above: 70, for: 1h}
      critical: {above: 75}
"""


def explain_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kpimon", "explain", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=False,
    )


def test_explain_against_a_running_daemon(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "kpimon.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [rules.yaml]\n"
    )
    with kpimon(tmp_path, "--config.file=kpimon.yml") as k:
        k.wait_for("ready", lambda: k.get("/-/ready")[0] == 200)

        text = explain_cmd("constant_load", "--url", k.base)
        assert (text.returncode, text.stderr) == (0, ""), text
        lines = text.stdout.splitlines()
        assert lines[0].startswith("constant_load at ")
        assert "every 1s" in lines[0]
        assert "constant_load" in lines[2]
        assert lines[3].startswith("  critical at 80.0%; warning pending ")
        assert "critical firing since " in lines[3]
        assert lines[4].split() == ["level", "phase", "condition", "why"]
        assert lines[5].split()[:5] == ["warning", "pending", "value", ">", "70"]
        assert lines[6].split()[:5] == ["critical", "firing", "value", ">", "75"]

        as_json = explain_cmd("constant_load", "--url", k.base + "/", "--format", "json")
        assert as_json.returncode == 0, as_json
        data = json.loads(as_json.stdout)
        (series,) = data["series"]
        assert (series["status"], series["levels"]["warning"]["phase"]) == ("critical", "pending")

        none = explain_cmd("constant_load", "--url", k.base, "--series", "instance=db1")
        assert none.returncode == 0, none
        assert none.stdout.splitlines()[-1] == "no series match"

        unknown = explain_cmd("nope", "--url", k.base)
        assert (unknown.returncode, unknown.stdout) == (1, "")
        assert unknown.stderr == 'kpimon explain: no KPI named "nope"\n'

        bad = explain_cmd("constant_load", "--url", k.base, "--series", "{instance=")
        assert bad.returncode == 2
        assert bad.stderr.startswith("kpimon explain: invalid series")


def test_connection_refused_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    got = explain_cmd("cpu_utilization", "--url", url)
    assert (got.returncode, got.stdout) == (1, "")
    assert got.stderr == f"kpimon explain: cannot reach kpimon at {url}: Connection refused\n"


def test_usage_errors_exit_2() -> None:
    assert explain_cmd().returncode == 2  # NAME is required
    bad_url = explain_cmd("cpu", "--url", "127.0.0.1:8574")
    assert bad_url.returncode == 2
    assert bad_url.stderr == (
        "kpimon explain: --url: expected http://HOST:PORT, got '127.0.0.1:8574'\n"
    )
    bad_series = explain_cmd("cpu", "--series", "db1")
    assert bad_series.returncode == 2
    assert "--series: expected a label set" in bad_series.stderr
    assert explain_cmd("cpu", "--format", "yaml").returncode == 2
