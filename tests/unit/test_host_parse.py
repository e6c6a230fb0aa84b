"""The host source's pure /proc parsers, on fixed text (no /proc, no clock)."""

from __future__ import annotations

import re

import pytest

from kpimon.sources.host import (
    CPU_JUMP_BACK_S,
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    CpuTimes,
    Mount,
    clamp_cpu_counters,
    parse_loadavg,
    parse_meminfo,
    parse_mounts,
    parse_stat,
    select_filesystems,
)

STAT = """\
cpu  4479 0 1136 69810 319 0 81 40 0 0
cpu0 1785 3 470 35493 142 1 27 17 5 2
cpu1 2694 0 666 34317 176 0 53 22 0 0
intr 137531 0 0 0 0 0 0 0
ctxt 247075
btime 1795376516
processes 5301
procs_running 2
procs_blocked 1
softirq 91011 0 26190 1 2104 4164 0 81 29378 0 29093
"""


def test_stat_cpu_lines_become_seconds_per_mode() -> None:
    stat = parse_stat(STAT, user_hz=100.0)
    assert stat.problems == ()
    assert [c.cpu for c in stat.cpus] == [0, 1]
    # user nice system idle iowait irq softirq steal, then guest and guest_nice (not subtracted)
    assert stat.cpus[0].seconds == (17.85, 0.03, 4.7, 354.93, 1.42, 0.01, 0.27, 0.17, 0.05, 0.02)
    assert stat.cpus[1].seconds[3] == 343.17


def test_stat_scalars_under_node_exporter_names() -> None:
    assert dict(parse_stat(STAT).scalars) == {
        "node_boot_time_seconds": 1795376516.0,
        "node_context_switches_total": 247075.0,
        "node_forks_total": 5301.0,
        "node_intr_total": 137531.0,
        "node_procs_blocked": 1.0,
        "node_procs_running": 2.0,
    }


def test_stat_old_kernel_columns_are_padded_with_zero() -> None:
    stat = parse_stat("cpu0 100 0 50 1000\ncpu1 100 0 50 1000 7 0 0\n", user_hz=100.0)
    assert stat.problems == ()
    assert stat.cpus[0].seconds == (1.0, 0.0, 0.5, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert stat.cpus[1].seconds[4] == 0.07


def test_stat_cpus_sorted_by_number_and_gaps_left_out() -> None:
    stat = parse_stat("cpu10 1 1 1 1\ncpu2 1 1 1 1\ncpu0 1 1 1 1\n")
    assert [c.cpu for c in stat.cpus] == [0, 2, 10]


def test_stat_malformed_lines_are_skipped_and_reported() -> None:
    text = (
        "cpu0 1785 0 470 35493 142 0 27 17 0 0\n"
        "cpu1 12 x 3 4\n"  # not a number
        "cpu2 12 13\n"  # truncated
        "cpuX 1 2 3 4\n"  # no CPU number
        "btime soon\n"
        "ctxt\n"  # no value: ignored like an unknown line
        "\n"
        "garbage here\n"
        "procs_running 3\n"
    )
    stat = parse_stat(text)
    assert [c.cpu for c in stat.cpus] == [0]
    assert dict(stat.scalars) == {"node_procs_running": 3.0}
    assert len(stat.problems) == 4
    assert stat.problems[0].startswith("line 2: ")
    assert "cpuX" in stat.problems[2]
    assert stat.problems[3].startswith("line 5: ")


def test_stat_empty_text() -> None:
    stat = parse_stat("")
    assert (stat.cpus, stat.scalars, stat.problems) == ((), (), ())


def test_loadavg() -> None:
    assert parse_loadavg("0.01 0.07 0.03 5/102 5269\n") == (0.01, 0.07, 0.03)


@pytest.mark.parametrize("text", ["", "0.01 0.07\n", "0.01 x 0.03 1/2 3\n"])
def test_loadavg_malformed(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the reading layer reports any ValueError
        parse_loadavg(text)


MEMINFO = """\
MemTotal:       24683656 kB
MemFree:        24501204 kB
MemAvailable:   24431196 kB
Buffers:            1116 kB
Cached:            58400 kB
SwapTotal:       1048572 kB
SwapFree:        1048000 kB
Active(anon):       1548 kB
Inactive(file):    24836 kB
HugePages_Total:       0
HugePages_Free:        3
Hugepagesize:       2048 kB
"""


def test_meminfo_names_and_units_as_node_exporter() -> None:
    mem = parse_meminfo(MEMINFO)
    assert mem.problems == ()
    fields = dict(mem.fields)
    assert fields == {
        "node_memory_MemTotal_bytes": 24683656 * 1024.0,
        "node_memory_MemFree_bytes": 24501204 * 1024.0,
        "node_memory_MemAvailable_bytes": 24431196 * 1024.0,
        "node_memory_Buffers_bytes": 1116 * 1024.0,
        "node_memory_Cached_bytes": 58400 * 1024.0,
        "node_memory_SwapTotal_bytes": 1048572 * 1024.0,
        "node_memory_SwapFree_bytes": 1048000 * 1024.0,
        "node_memory_Active_anon_bytes": 1548 * 1024.0,
        "node_memory_Inactive_file_bytes": 24836 * 1024.0,
        "node_memory_HugePages_Total": 0.0,
        "node_memory_HugePages_Free": 3.0,
        "node_memory_Hugepagesize_bytes": 2048 * 1024.0,
    }
    assert [name for name, _ in mem.fields][:2] == [
        "node_memory_MemTotal_bytes",
        "node_memory_MemFree_bytes",
    ]


def test_meminfo_malformed_lines_are_skipped_and_reported() -> None:
    text = (
        "MemTotal:       1000 kB\n"
        "\n"  # empty lines occur on some kernels: ignored silently
        "MemFree:\n"  # no value
        "Cached:  abc kB\n"
        "Weird line with many fields\n"
        "Bad-Name:  5 kB\n"  # not a valid metric name
        "MemAvailable:   500 kB\n"
    )
    mem = parse_meminfo(text)
    assert dict(mem.fields) == {
        "node_memory_MemTotal_bytes": 1024000.0,
        "node_memory_MemAvailable_bytes": 512000.0,
    }
    assert [p.split(":")[0] for p in mem.problems] == ["line 3", "line 4", "line 5", "line 6"]


MOUNTS = """\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334432k 0 0
tmpfs /dev/shm tmpfs rw,relatime 0 0
/dev/vda / ext4 rw,relatime,discard 0 0
/dev/vdb /srv/my\\040data xfs ro,noatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=3274560k,mode=755 0 0
tmpfs /run/credentials/systemd-sysusers.service ramfs ro 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
/dev/vdc /var/lib/docker xfs rw 0 0
nfs:/export /mnt/nfs nfs4 rw 0 0
squash /snap/core/1 squashfs ro 0 0
binfmt_misc /proc/sys/fs/binfmt_misc binfmt_misc rw 0 0
/dev/vda / ext4 rw,relatime,discard 0 0
"""


def test_mounts_parse_and_unescape() -> None:
    table = parse_mounts(MOUNTS)
    assert table.problems == ()
    assert len(table.mounts) == 15
    data = table.mounts[5]
    assert data == Mount("/dev/vdb", "/srv/my data", "xfs", "ro,noatime")
    assert data.readonly
    assert not table.mounts[4].readonly
    tab = parse_mounts("a /x\\011y\\134z\\012 ext4 rw 0 0\n").mounts[0]
    assert tab.mountpoint == "/x\ty\\z\n"


def test_mounts_malformed_lines_are_skipped_and_reported() -> None:
    table = parse_mounts("/dev/vda / ext4 rw 0 0\n/dev/vdb /data\n\n/dev/vdc /x xfs rw 0 0\n")
    assert [m.mountpoint for m in table.mounts] == ["/", "/x"]
    assert len(table.problems) == 1
    assert table.problems[0].startswith("line 2: ")


def test_default_filters_and_dedup_as_node_exporter() -> None:
    selected = select_filesystems(
        parse_mounts(MOUNTS).mounts,
        re.compile(DEFAULT_MOUNT_POINTS_EXCLUDE),
        re.compile(DEFAULT_FS_TYPES_EXCLUDE),
    )
    assert [(m.mountpoint, m.fstype) for m in selected] == [
        ("/", "ext4"),  # once, though mounted twice
        ("/mnt/nfs", "nfs4"),
        ("/run", "tmpfs"),  # upstream excludes only /run/credentials/...
        ("/srv/my data", "xfs"),
        ("/var/lib/docker", "xfs"),  # only what is *under* it is excluded
    ]


def test_filters_are_searched_not_anchored() -> None:
    mounts = parse_mounts("a /data/cache ext4 rw 0 0\nb /data ext4 rw 0 0\n").mounts
    selected = select_filesystems(mounts, re.compile("cache"), re.compile("^$"))
    assert [m.mountpoint for m in selected] == ["/data"]


def _cpu(cpu: int, idle: float, iowait: float = 1.0, user: float = 10.0) -> CpuTimes:
    return CpuTimes(cpu, (user, 0.0, 5.0, idle, iowait, 0.0, 0.0, 0.0, 0.0, 0.0))


def test_clamp_keeps_counters_from_going_backwards() -> None:
    first = clamp_cpu_counters({}, (_cpu(0, 100.0, iowait=2.0), _cpu(1, 100.0)))
    second = clamp_cpu_counters(first, (_cpu(0, 101.0, iowait=1.5, user=11.0), _cpu(1, 100.5)))
    assert second[0] == (11.0, 0.0, 5.0, 101.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert second[1][3] == 100.5


def test_clamp_idle_small_jump_back_is_held() -> None:
    first = clamp_cpu_counters({}, (_cpu(0, 100.0),))
    held = clamp_cpu_counters(first, (_cpu(0, 100.0 - CPU_JUMP_BACK_S + 0.5),))
    assert held[0][3] == 100.0


def test_clamp_idle_big_jump_back_resets_that_cpu() -> None:
    first = clamp_cpu_counters({}, (_cpu(0, 100.0, user=50.0), _cpu(1, 100.0, user=50.0)))
    second = clamp_cpu_counters(first, (_cpu(0, 100.0 - CPU_JUMP_BACK_S, user=1.0), _cpu(1, 90.0)))
    assert second[0][0] == 1.0  # reset: the new, lower values are taken
    assert second[0][3] == 100.0 - CPU_JUMP_BACK_S
    assert second[1][3] == 90.0


def test_clamp_resets_when_the_set_of_cpus_changes() -> None:
    first = clamp_cpu_counters({}, (_cpu(0, 100.0), _cpu(1, 100.0)))
    second = clamp_cpu_counters(first, (_cpu(0, 99.0),))
    assert list(second) == [0]
    assert second[0][3] == 99.0
