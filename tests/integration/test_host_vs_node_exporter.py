"""The host source against a real node_exporter 1.5 on the same machine (the oracle).

node_exporter runs with the collectors the host source mirrors and with the filesystem filters
set explicitly to the upstream 1.5 defaults, which HostCollector uses (Debian's package patches
the mount-point default to also drop /run, /mnt and /media). Counters and gauges that move are
compared by bracketing: scrape, collect, scrape, and the host's value must lie between the two
scrapes' values, which holds however fast or slow the machine is.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kpimon.labels import Labels, decode_key, make
from kpimon.sources.host import (
    CPU_MODES,
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    HostCollector,
)
from tests.helpers.debian import binary, fetch, free_port, running

pytestmark = pytest.mark.debian

Series = dict[tuple[str, Labels], float]

# The idle/iowait split of a CPU's idle time in progress can move between the two (the kernel
# decides by whether a task waits for I/O when the idle period ends), so either may step back by
# up to that period; node_exporter hides it by holding the old value, a fresh collector cannot.
IDLE_SLACK_S = 1.0


@contextlib.contextmanager
def _node_exporter() -> Iterator[str]:
    exe = binary("prometheus-node-exporter")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        exe,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        *(f"--collector.{c}" for c in ("cpu", "stat", "loadavg", "meminfo", "filesystem")),
        *(f"--collector.{c}" for c in ("time", "uname")),
        f"--collector.filesystem.mount-points-exclude={DEFAULT_MOUNT_POINTS_EXCLUDE}",
        f"--collector.filesystem.fs-types-exclude={DEFAULT_FS_TYPES_EXCLUDE}",
    ]
    with running(args, f"{base}/metrics"):
        yield base


def _scrape(base: str) -> Series:
    text = fetch(f"{base}/metrics").decode()
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, make(s.labels))] = s.value
    return out


def _host(collector: HostCollector) -> Series:
    samples = collector.collect()
    assert samples.errors == ()
    out: Series = {}
    for key, value in zip(samples.keys, samples.values.tolist(), strict=True):
        out[decode_key(key)] = value
    return out


def _label_names(series: Series) -> dict[str, set[tuple[str, ...]]]:
    names: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for name, labels in series:
        names[name].add(tuple(k for k, _ in labels))
    return names


def _only(series: Series, name: str) -> dict[Labels, float]:
    return {labels: v for (n, labels), v in series.items() if n == name}


@pytest.fixture(scope="module")
def observed() -> tuple[Series, Series, Series]:
    """(node_exporter before, host, node_exporter after), taken back to back."""
    with _node_exporter() as base:
        collector = HostCollector()
        _host(collector)  # warm up: the first collect pays for imports and caches
        _scrape(base)
        before = _scrape(base)
        host = _host(collector)
        after = _scrape(base)
    return before, host, after


def test_every_published_metric_exists_in_node_exporter_with_the_same_label_names(
    observed: tuple[Series, Series, Series],
) -> None:
    before, host, _ = observed
    ours, theirs = _label_names(host), _label_names(before)
    assert set(ours) <= set(theirs), sorted(set(ours) - set(theirs))
    for name in ours:
        assert ours[name] == theirs[name], name
    required = {
        "node_cpu_seconds_total",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemFree_bytes",
        "node_memory_Buffers_bytes",
        "node_memory_Cached_bytes",
        "node_memory_SwapTotal_bytes",
        "node_memory_SwapFree_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_free_bytes",
        "node_filesystem_files",
        "node_filesystem_files_free",
        "node_filesystem_readonly",
        "node_boot_time_seconds",
        "node_time_seconds",
        "node_uname_info",
    }
    assert required <= set(ours)


def test_meminfo_fields_match(observed: tuple[Series, Series, Series]) -> None:
    before, host, after = observed
    ours = {n for n, _ in host if n.startswith("node_memory_")}
    assert ours == {n for n, _ in before if n.startswith("node_memory_")}
    total = ("node_memory_MemTotal_bytes", ())
    assert host[total] in (before[total], after[total])


def test_cpu_series_match_and_lie_between_two_scrapes(
    observed: tuple[Series, Series, Series],
) -> None:
    before, host, after = observed
    ours = _only(host, "node_cpu_seconds_total")
    assert set(ours) == set(_only(before, "node_cpu_seconds_total"))
    assert {dict(labels)["mode"] for labels in ours} == set(CPU_MODES)
    for name in ("node_cpu_seconds_total", "node_cpu_guest_seconds_total"):
        low, high = _only(before, name), _only(after, name)
        for labels, value in _only(host, name).items():
            slack = IDLE_SLACK_S if dict(labels)["mode"] in ("idle", "iowait") else 0.0
            assert low[labels] - slack <= value <= high[labels] + slack, (name, labels)


def test_filesystems_match(observed: tuple[Series, Series, Series]) -> None:
    before, host, after = observed
    for name in ("node_filesystem_device_error", "node_filesystem_size_bytes"):
        assert set(_only(host, name)) == set(_only(before, name)), name
    mountpoints = {
        dict(labels)["mountpoint"] for labels in _only(host, "node_filesystem_size_bytes")
    }
    assert "/" in mountpoints
    for name in ("node_filesystem_size_bytes", "node_filesystem_files", "node_filesystem_readonly"):
        for labels, value in _only(host, name).items():
            assert value in (before[(name, labels)], after[(name, labels)]), (name, labels)


def test_load_boot_time_clock_and_uname_match(observed: tuple[Series, Series, Series]) -> None:
    before, host, after = observed
    for name in ("node_load1", "node_load5", "node_load15"):
        # /proc/loadavg has 2 decimals and changes every 5 s: equal to one of the scrapes
        assert host[(name, ())] in (before[(name, ())], after[(name, ())]), name
    boot = ("node_boot_time_seconds", ())
    assert abs(host[boot] - before[boot]) <= 1.0
    now = ("node_time_seconds", ())
    assert before[now] - 1.0 <= host[now] <= after[now] + 1.0
    assert _only(host, "node_uname_info") == _only(before, "node_uname_info")
    success = _only(host, "node_scrape_collector_success")
    assert success == dict.fromkeys(success, 1.0)
    assert set(success) <= set(_only(before, "node_scrape_collector_success"))
