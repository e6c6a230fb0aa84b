"""HostCollector.collect() over a fake /proc built in tmp_path (statvfs real or injected)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from kpimon.labels import decode_key, format_key
from kpimon.sources.host import CPU_MODES, USER_HZ, HostCollector, HostSamples

STAT = """\
cpu  300 0 100 3000 10 0 5 0 0 0
cpu0 100 0 50 1500 4 0 2 0 0 0
cpu1 200 0 50 1500 6 0 3 0 7 0
intr 1000 0 0
ctxt 5000
btime 1700000000
processes 42
procs_running 1
procs_blocked 0
"""
MEMINFO = """\
MemTotal:        1000 kB
MemFree:          200 kB
MemAvailable:     600 kB
Buffers:           10 kB
Cached:           300 kB
SwapTotal:          0 kB
SwapFree:           0 kB
HugePages_Total:    0
"""


def _statvfs_result(
    blocks: int, bfree: int, bavail: int, files: int, ffree: int
) -> os.statvfs_result:
    # bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax
    return os.statvfs_result((4096, 4096, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    data = tmp_path / "data"
    data.mkdir()
    _write(root, "stat", STAT)
    _write(root, "loadavg", "0.50 0.25 0.10 1/100 1234\n")
    _write(root, "meminfo", MEMINFO)
    _write(root, "sys/kernel/domainname", "(none)\n")
    _write(
        root,
        "mounts",
        "proc /proc proc rw 0 0\n"
        "/dev/root / ext4 rw,relatime 0 0\n"
        f"/dev/data {data} xfs ro,noatime 0 0\n"
        f"/dev/gone {tmp_path / 'gone'} ext4 rw 0 0\n"
        "tmpfs /dev/shm tmpfs rw 0 0\n",
    )
    return root


def _as_dict(samples: HostSamples) -> dict[bytes, float]:
    assert len(samples.keys) == len(samples.values) == len(set(samples.keys))
    assert samples.values.dtype == np.float64
    return dict(zip(samples.keys, samples.values.tolist(), strict=True))


def _key(name: str, **labels: str) -> bytes:
    return format_key(name, labels)


def test_collect_publishes_node_exporter_series(proc: Path, tmp_path: Path) -> None:
    samples = HostCollector(str(proc), clock_wall=lambda: 1700000123.5).collect()
    got = _as_dict(samples)
    assert samples.timestamp == 1700000123.5
    assert got[_key("node_cpu_seconds_total", cpu="1", mode="user")] == 200 / USER_HZ
    assert got[_key("node_cpu_seconds_total", cpu="0", mode="idle")] == 1500 / USER_HZ
    assert got[_key("node_cpu_guest_seconds_total", cpu="1", mode="user")] == 7 / USER_HZ
    cpu_series = {decode_key(k)[1] for k in got if k.startswith(b"node_cpu_seconds_total")}
    assert cpu_series == {(("cpu", c), ("mode", m)) for c in ("0", "1") for m in CPU_MODES}
    assert got[b"node_boot_time_seconds"] == 1700000000.0
    assert got[b"node_time_seconds"] == 1700000123.5
    assert got[b"node_load1"] == 0.5
    assert got[b"node_load5"] == 0.25
    assert got[b"node_load15"] == 0.1
    assert got[b"node_memory_MemTotal_bytes"] == 1024000.0
    assert got[b"node_memory_MemAvailable_bytes"] == 614400.0
    assert got[b"node_memory_HugePages_Total"] == 0.0
    u = os.uname()
    uname = _key(
        "node_uname_info",
        domainname="(none)",
        machine=u.machine,
        nodename=u.nodename,
        release=u.release,
        sysname=u.sysname,
        version=u.version,
    )
    assert got[uname] == 1.0
    # No job/instance: the scheduler adds the target labels.
    assert not any(b"instance=" in k or b"job=" in k for k in got)


def test_collect_filesystems_with_real_statvfs(proc: Path, tmp_path: Path) -> None:
    samples = HostCollector(str(proc)).collect()
    got = _as_dict(samples)
    root = {"device": "/dev/root", "fstype": "ext4", "mountpoint": "/"}
    st = os.statvfs("/")
    assert got[_key("node_filesystem_size_bytes", **root)] == st.f_blocks * st.f_bsize
    assert got[_key("node_filesystem_files", **root)] == st.f_files
    for name in ("avail_bytes", "free_bytes", "files_free"):
        assert got[_key(f"node_filesystem_{name}", **root)] >= 0
    assert got[_key("node_filesystem_readonly", **root)] == 0.0
    assert got[_key("node_filesystem_device_error", **root)] == 0.0
    data = {"device": "/dev/data", "fstype": "xfs", "mountpoint": str(tmp_path / "data")}
    assert got[_key("node_filesystem_readonly", **data)] == 1.0
    # A mount point that cannot be stat'ed: device_error 1, nothing else, named in errors.
    gone = {"device": "/dev/gone", "fstype": "ext4", "mountpoint": str(tmp_path / "gone")}
    assert got[_key("node_filesystem_device_error", **gone)] == 1.0
    assert _key("node_filesystem_size_bytes", **gone) not in got
    assert samples.errors == (f"statvfs {tmp_path / 'gone'}: No such file or directory",)
    mountpoints = {
        dict(decode_key(k)[1])["mountpoint"]
        for k in got
        if k.startswith(b"node_filesystem_device_error")
    }
    assert mountpoints == {
        "/",
        str(tmp_path / "data"),
        str(tmp_path / "gone"),
    }  # /proc, /dev/shm out
    assert got[_key("node_scrape_collector_success", collector="filesystem")] == 1.0


def test_filesystem_values_from_statvfs(proc: Path) -> None:
    def statvfs(path: str) -> os.statvfs_result:
        return _statvfs_result(blocks=1000, bfree=300, bavail=250, files=64, ffree=60)

    got = _as_dict(HostCollector(str(proc), statvfs=statvfs).collect())
    root = {"device": "/dev/root", "fstype": "ext4", "mountpoint": "/"}
    assert got[_key("node_filesystem_size_bytes", **root)] == 4096000.0
    assert got[_key("node_filesystem_free_bytes", **root)] == 1228800.0
    assert got[_key("node_filesystem_avail_bytes", **root)] == 1024000.0
    assert got[_key("node_filesystem_files", **root)] == 64.0
    assert got[_key("node_filesystem_files_free", **root)] == 60.0


def test_proc_1_mounts_preferred_over_proc_mounts(proc: Path) -> None:
    _write(proc, "1/mounts", "/dev/pid1root / btrfs rw 0 0\n")
    got = _as_dict(HostCollector(str(proc)).collect())
    devices = {dict(decode_key(k)[1])["device"] for k in got if b"node_filesystem_" in k}
    assert devices == {"/dev/pid1root"}


def test_rootfs_prefix_is_stripped_and_statvfs_goes_through_it(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "srv").mkdir(parents=True)
    root = tmp_path / "proc"
    _write(root, "mounts", f"/dev/a {host} ext4 rw 0 0\n/dev/b {host}/srv xfs rw 0 0\n")
    seen: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        seen.append(path)
        return os.statvfs(path)

    samples = HostCollector(str(root), rootfs=str(host), statvfs=statvfs).collect()
    got = _as_dict(samples)
    assert sorted(seen) == [str(host) + "/", str(host / "srv")]
    assert _key("node_filesystem_size_bytes", device="/dev/a", fstype="ext4", mountpoint="/") in got
    assert (
        _key("node_filesystem_size_bytes", device="/dev/b", fstype="xfs", mountpoint="/srv") in got
    )


def test_key_list_is_reused_while_the_series_set_is_unchanged(proc: Path) -> None:
    collector = HostCollector(str(proc))
    first = collector.collect()
    _write(proc, "loadavg", "1.50 1.25 1.10 1/100 1234\n")
    second = collector.collect()
    assert second.keys is first.keys
    assert second.values[first.keys.index(b"node_load1")] == 1.5
    _write(proc, "meminfo", MEMINFO + "Zswap: 0 kB\n")
    third = collector.collect()
    assert third.keys is not first.keys
    assert b"node_memory_Zswap_bytes" in third.keys


def test_cpu_counters_do_not_go_backwards(proc: Path) -> None:
    collector = HostCollector(str(proc))
    collector.collect()
    _write(proc, "stat", STAT.replace("cpu0 100 0 50 1500 4", "cpu0 101 0 50 1501 2"))
    got = _as_dict(collector.collect())
    assert got[_key("node_cpu_seconds_total", cpu="0", mode="iowait")] == 4 / USER_HZ
    assert got[_key("node_cpu_seconds_total", cpu="0", mode="user")] == 101 / USER_HZ


def test_unreadable_files_are_skipped_and_named(proc: Path) -> None:
    (proc / "meminfo").unlink()
    (proc / "loadavg").write_text("garbage\n")
    collector = HostCollector(str(proc))
    samples = collector.collect()
    got = _as_dict(samples)
    assert not any(k.startswith(b"node_memory_") for k in got)
    assert not any(k.startswith(b"node_load") for k in got)
    assert b"node_boot_time_seconds" in got
    assert [e for e in samples.errors if not e.startswith("statvfs ")] == [
        f"{proc}/loadavg: expected 3 load averages, got 'garbage\\n'",
        f"{proc}/meminfo: No such file or directory",
    ]
    assert collector.errors == samples.errors
    success = {
        dict(decode_key(k)[1])["collector"]: v
        for k, v in got.items()
        if k.startswith(b"node_scrape_collector_success")
    }
    assert success == {
        "cpu": 1.0,
        "filesystem": 1.0,
        "loadavg": 0.0,
        "meminfo": 0.0,
        "stat": 1.0,
        "time": 1.0,
        "uname": 1.0,
    }


def test_missing_proc_root_still_returns_time_and_errors(tmp_path: Path) -> None:
    samples = HostCollector(str(tmp_path / "nothing"), clock_wall=lambda: 5.0).collect()
    got = _as_dict(samples)
    assert got[b"node_time_seconds"] == 5.0
    assert len(samples.errors) == 5  # stat, loadavg, meminfo, mounts, domainname
    assert all(str(tmp_path / "nothing") in e for e in samples.errors)


def test_malformed_lines_reported_with_file_and_line(proc: Path) -> None:
    _write(proc, "meminfo", MEMINFO + "Broken: x kB\n")
    samples = HostCollector(str(proc)).collect()
    assert f"{proc}/meminfo: line 9: cannot parse 'Broken: x kB'" in samples.errors
    assert b"node_memory_MemTotal_bytes" in samples.keys


def test_a_hung_statvfs_is_not_waited_for_again(proc: Path) -> None:
    """While an abandoned collect is stuck in statvfs("/"), later collects skip that mount."""
    entered, release = threading.Event(), threading.Event()

    def statvfs(path: str) -> os.statvfs_result:
        if path == "/":
            entered.set()
            release.wait()
        return os.statvfs(path)

    collector = HostCollector(str(proc), statvfs=statvfs)
    stuck = threading.Thread(target=collector.collect)
    stuck.start()
    try:
        assert entered.wait(timeout=30)
        entered.clear()
        samples = collector.collect()  # would block forever if "/" were stat'ed again
        assert not entered.is_set()
        got = _as_dict(samples)
        root = {"device": "/dev/root", "fstype": "ext4", "mountpoint": "/"}
        assert got[_key("node_filesystem_device_error", **root)] == 1.0
        assert _key("node_filesystem_size_bytes", **root) not in got
        assert "statvfs /: an earlier call has not returned (hung mount?)" in samples.errors
    finally:
        release.set()
        stuck.join(timeout=30)
    # Once the call returns, the mount is stat'ed again.
    got = _as_dict(collector.collect())
    root = {"device": "/dev/root", "fstype": "ext4", "mountpoint": "/"}
    assert got[_key("node_filesystem_device_error", **root)] == 0.0
