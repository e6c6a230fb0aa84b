"""The packaged default host KPIs: well formed, compile, read only what the host source publishes,
and compute what they claim (checked by promtool, i.e. by Prometheus' own engine)."""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpimon.config import default_config, parse_rules
from kpimon.labels import decode_key
from kpimon.promql import compile_expr
from kpimon.sources.host import HostCollector
from tests.helpers.debian import binary

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "kpimon" / "rules" / "host.yaml"
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
UNITS = {"percent", "ratio", "seconds", "bytes", "count"}


def _kpis() -> list[dict[str, Any]]:
    doc = yaml.safe_load(PACKAGED.read_text())
    assert list(doc) == ["kpis"]
    kpis: list[dict[str, Any]] = doc["kpis"]
    return kpis


def test_rules_link_points_at_the_packaged_file() -> None:
    link = REPO / "rules" / "host.yaml"
    assert link.is_symlink()
    assert link.readlink() == Path("../kpimon/rules/host.yaml")
    assert link.resolve() == PACKAGED.resolve()
    packaged = resources.files("kpimon").joinpath("rules/host.yaml").read_text()
    assert packaged == PACKAGED.read_text()


def test_the_expected_kpis_are_defined() -> None:
    names = [k["name"] for k in _kpis()]
    assert names == [
        "cpu_utilization",
        "memory_utilization",
        "disk_usage",
        "load_per_core",
        "uptime",
    ]


@pytest.mark.parametrize("kpi", _kpis(), ids=lambda k: str(k["name"]))
def test_kpi_is_complete_and_its_levels_are_consistent(kpi: dict[str, Any]) -> None:
    assert NAME.fullmatch(kpi["name"])
    assert kpi["owner"] == "platform-team"
    assert kpi["help"].strip()
    assert kpi["unit"] in UNITS
    assert set(kpi["annotations"]) == {"summary"}
    ((target_op, target),) = kpi["target"].items()
    levels = kpi["levels"]
    assert set(levels) == {"warning", "critical"}
    for level in levels.values():
        ((op, threshold),) = ((k, v) for k, v in level.items() if k in ("above", "below"))
        assert set(level) <= {op, "for", "clear", "clear_for"}
        clear = level.get("clear", threshold)
        assert clear <= threshold if op == "above" else clear >= threshold  # hysteresis direction
        # Meeting the target never triggers a level.
        assert (target_op, op) in (("below", "above"), ("above", "below"))
        assert target <= threshold if op == "above" else target >= threshold
    warn, crit = levels["warning"], levels["critical"]
    assert crit.get("above", 0) > warn.get("above", 0) or crit.get("below", 0) < warn["below"]


def test_the_config_loader_accepts_the_file_as_the_embedded_default() -> None:
    kpis, problems = parse_rules(PACKAGED.read_text(), "rules/host.yaml")
    assert problems == []
    assert [k.name for k in kpis] == [k["name"] for k in _kpis()]
    embedded = default_config()
    assert embedded.host.enabled
    assert [k.name for k in embedded.kpis] == [k.name for k in kpis]


def test_expressions_compile_and_read_only_host_metrics() -> None:
    published = {decode_key(k)[0] for k in HostCollector().collect().keys}
    for kpi in _kpis():
        compiled = compile_expr(kpi["expr"])
        assert compiled.metric_names is not None, kpi["name"]
        assert compiled.metric_names <= published, kpi["name"]
        assert compiled.max_range_s <= 300.0


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def _host_input() -> list[dict[str, str]]:
    """Two targets as the scheduler labels them: kpimon's own host source and a node_exporter."""
    h1 = {"job": "host", "instance": "h1"}
    n2 = {"job": "node", "instance": "n2:9100", "env": "prod"}
    out = []
    for cpu, per_min in (("0", 30), ("1", 60)):  # idle 0.5/s and 1/s -> 25 % busy
        out.append(
            _series("node_cpu_seconds_total", {**h1, "cpu": cpu, "mode": "idle"}, f"0+{per_min}x10")
        )
        out.append(_series("node_cpu_seconds_total", {**h1, "cpu": cpu, "mode": "user"}, "0+45x10"))
    for cpu in "0123":  # idle 0.25/s each -> 75 % busy
        out.append(_series("node_cpu_seconds_total", {**n2, "cpu": cpu, "mode": "idle"}, "0+15x10"))
        out.append(
            _series("node_cpu_seconds_total", {**n2, "cpu": cpu, "mode": "system"}, "0+45x10")
        )
    for labels, total, avail, load5 in ((h1, 1000, 750, 3), (n2, 4000, 1000, 2)):
        out.append(_series("node_memory_MemTotal_bytes", labels, f"{total}x10"))
        out.append(_series("node_memory_MemAvailable_bytes", labels, f"{avail}x10"))
        out.append(_series("node_load5", labels, f"{load5}x10"))
        out.append(_series("node_boot_time_seconds", labels, "400x10"))
        out.append(_series("node_time_seconds", labels, "1000+60x10"))
    filesystems = (
        (h1, "/dev/vda", "ext4", "/", 100, 20),
        (h1, "tmpfs", "tmpfs", "/dev/shm", 100, 0),  # in memory: not a disk
        (h1, "none", "ramfs", "/run/x", 100, 0),
        (h1, "fuse", "fuse.empty", "/mnt/empty", 0, 0),  # no size: left out, not NaN
        (n2, "/dev/sdb", "xfs", "/data", 200, 50),
    )
    for labels, device, fstype, mountpoint, size, avail in filesystems:
        fs = {**labels, "device": device, "fstype": fstype, "mountpoint": mountpoint}
        out.append(_series("node_filesystem_size_bytes", fs, f"{size}x10"))
        out.append(_series("node_filesystem_avail_bytes", fs, f"{avail}x10"))
    return out


EXPECTED = {
    "cpu_utilization": [('{instance="h1"}', 25), ('{instance="n2:9100"}', 75)],
    "memory_utilization": [
        ('{job="host",instance="h1"}', 25),
        ('{job="node",instance="n2:9100",env="prod"}', 75),
    ],
    "disk_usage": [
        ('{job="host",instance="h1",device="/dev/vda",fstype="ext4",mountpoint="/"}', 80),
        (
            '{job="node",instance="n2:9100",env="prod",device="/dev/sdb",fstype="xfs",'
            'mountpoint="/data"}',
            75,
        ),
    ],
    # one-to-one per target; `on (job, instance)` keeps just those labels
    "load_per_core": [
        ('{job="host",instance="h1"}', 1.5),
        ('{job="node",instance="n2:9100"}', 0.5),
    ],
    "uptime": [
        ('{job="host",instance="h1"}', 1200),
        ('{job="node",instance="n2:9100",env="prod"}', 1200),
    ],
}


@pytest.mark.debian
def test_expressions_compute_what_they_claim_in_prometheus(tmp_path: Path) -> None:
    promtool = binary("promtool")
    kpis = {k["name"]: k["expr"] for k in _kpis()}
    assert set(kpis) == set(EXPECTED)
    rules = tmp_path / "empty_rules.yaml"
    rules.write_text("groups: []\n")
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _host_input(),
                "promql_expr_test": [
                    {
                        "expr": kpis[name],
                        "eval_time": "10m",
                        "exp_samples": [{"labels": lbl, "value": v} for lbl, v in samples],
                    }
                    for name, samples in EXPECTED.items()
                ],
            }
        ],
    }
    test_file = tmp_path / "host_test.yaml"
    test_file.write_text(json.dumps(test, indent=1))  # JSON is YAML; no quoting surprises
    proc = subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
