"""The built-in ``host`` source: this Linux machine's metrics under node_exporter's names.

Publishes what node_exporter 1.5's default ``cpu``, ``stat``, ``loadavg``, ``meminfo``,
``filesystem``, ``time`` and ``uname`` collectors publish for the metrics KPIs use, with the same
names, label names and units, so one rule file works against this source and a real node_exporter:

- ``node_cpu_seconds_total{cpu,mode}`` (modes ``user nice system idle iowait irq softirq steal``;
  as in 1.5, ``user`` and ``nice`` *include* guest time, exported again as
  ``node_cpu_guest_seconds_total{cpu,mode="user"|"nice"}``). Counters are held monotonic the way
  1.5 does it: a value that goes backwards (iowait does) keeps its last value, and an idle counter
  that jumps back by 3 s or more (CPU hotplug) resets that CPU.
- ``node_boot_time_seconds``, ``node_context_switches_total``, ``node_forks_total``,
  ``node_intr_total``, ``node_procs_running``, ``node_procs_blocked`` (/proc/stat).
- ``node_load1``, ``node_load5``, ``node_load15``.
- ``node_memory_<Field>_bytes`` for every /proc/meminfo field with a unit (``Active(anon)`` becomes
  ``Active_anon``) and ``node_memory_<Field>`` for those without (``HugePages_Total``).
- ``node_filesystem_{size,free,avail}_bytes``, ``node_filesystem_files``,
  ``node_filesystem_files_free``, ``node_filesystem_readonly`` and
  ``node_filesystem_device_error`` with labels ``{device, fstype, mountpoint}``, for the mounts of
  ``<proc_root>/1/mounts`` (else ``<proc_root>/mounts``) not excluded by the upstream 1.5 default
  patterns below. Debian's package patches the mount-point default to also exclude ``/run``,
  ``/mnt`` and ``/media``; pass ``mount_points_exclude`` to get that.
- ``node_time_seconds``, ``node_uname_info{sysname,release,version,machine,nodename,domainname}``
  and ``node_scrape_collector_success{collector}`` (1 when that collector read its input cleanly).

Known differences from 1.5: offline CPUs are left out (1.5 emits zeros for gaps in the CPU
numbering); every octal escape in /proc/mounts is decoded, not only ``\\040`` and ``\\011``;
a malformed line is skipped (and reported) instead of failing the whole collector.

Samples carry no ``job``/``instance``: the scheduler attaches the target labels.

Layout: the ``parse_*`` functions are pure (text in, values out); :class:`HostCollector` is the thin
reading layer. Nothing here is async. ``collect`` blocks on ``statvfs``, which can hang forever on
a dead network mount, so the daemon calls it in a worker thread under a timeout (``HostSource``
in scrape.py). A hung call keeps its thread; later calls see that mount's ``statvfs`` still
pending and skip it (``node_filesystem_device_error`` 1, an entry in ``errors``), as
node_exporter's stuck-mount tracking does, so one hung mount costs one thread, not one per call.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from kpimon.labels import format_key

DEFAULT_MOUNT_POINTS_EXCLUDE = (
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
"""node_exporter 1.5's ``--collector.filesystem.mount-points-exclude`` default (upstream)."""

DEFAULT_FS_TYPES_EXCLUDE = (
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|"
    "iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|"
    "sysfs|tracefs)$"
)
"""node_exporter 1.5's ``--collector.filesystem.fs-types-exclude`` default."""

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
"""The ``mode`` label values of ``node_cpu_seconds_total``, in /proc/stat column order."""

_N_COLUMNS = len(CPU_MODES) + 2  # then guest, guest_nice
_IDLE = CPU_MODES.index("idle")
CPU_JUMP_BACK_S = 3.0
"""An idle counter going back this much or more means a hotplugged CPU: reset its counters."""


def _user_hz() -> float:
    try:
        return hz if (hz := float(os.sysconf("SC_CLK_TCK"))) > 0 else 100.0
    except (ValueError, OSError):
        return 100.0


USER_HZ = _user_hz()
"""Clock ticks per second of /proc/stat (100 on every common architecture)."""

_STAT_SCALARS = {
    "btime": "node_boot_time_seconds",
    "ctxt": "node_context_switches_total",
    "intr": "node_intr_total",
    "processes": "node_forks_total",
    "procs_blocked": "node_procs_blocked",
    "procs_running": "node_procs_running",
}
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PARENS = re.compile(r"\((.*)\)")
_OCTAL = re.compile(r"\\([0-7]{3})")


# Pure parsing: text in, values out.


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """A ``cpuN`` line of /proc/stat in seconds: the modes of CPU_MODES, then guest, guest_nice."""

    cpu: int
    seconds: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What /proc/stat says: per-CPU times (by CPU number), scalars by metric name, problems."""

    cpus: tuple[CpuTimes, ...]
    scalars: tuple[tuple[str, float], ...]
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemInfo:
    """/proc/meminfo as ``(metric name, value)`` pairs in file order, and the lines skipped."""

    fields: tuple[tuple[str, float], ...]
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of /proc/mounts, escapes decoded."""

    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def readonly(self) -> bool:
        """Mounted read-only (``ro`` among the options)."""
        return "ro" in self.options.split(",")


@dataclass(frozen=True, slots=True)
class MountTable:
    """The mounts of /proc/mounts in file order, and the lines skipped."""

    mounts: tuple[Mount, ...]
    problems: tuple[str, ...]


def parse_stat(text: str, user_hz: float = USER_HZ) -> ProcStat:
    """Parse /proc/stat. CPU ticks become seconds; malformed lines are skipped and reported."""
    cpus: dict[int, CpuTimes] = {}
    scalars: dict[str, float] = {}
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) < 2:
            continue
        head = parts[0]
        if head.startswith("cpu"):
            if head == "cpu":
                continue  # the sum over CPUs; node_exporter does not export it either
            try:
                cpu = int(head[3:])
                ticks = [int(p) for p in parts[1 : 1 + _N_COLUMNS]]
                if cpu < 0 or len(ticks) < 4:  # every kernel since 2.4 has user nice system idle
                    raise ValueError(line)
            except ValueError:
                problems.append(f"line {lineno}: cannot parse {line[:80]!r}")
                continue
            ticks += [0] * (_N_COLUMNS - len(ticks))
            cpus[cpu] = CpuTimes(cpu, tuple(t / user_hz for t in ticks))
        elif head in _STAT_SCALARS:
            try:
                scalars[_STAT_SCALARS[head]] = float(int(parts[1]))
            except ValueError:
                problems.append(f"line {lineno}: cannot parse {line[:80]!r}")
    return ProcStat(
        tuple(cpus[c] for c in sorted(cpus)), tuple(sorted(scalars.items())), tuple(problems)
    )


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages of /proc/loadavg; ValueError if they are not there."""
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"expected 3 load averages, got {text[:80]!r}")
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_meminfo(text: str) -> MemInfo:
    """Parse /proc/meminfo into node_exporter metric names; values with a unit are kB → bytes."""
    fields: dict[str, float] = {}
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        key = parts[0].removesuffix(":")
        try:
            value = float(parts[1]) if len(parts) in (2, 3) and parts[0].endswith(":") else None
        except ValueError:
            value = None
        name = "node_memory_" + _PARENS.sub(r"_\1", key) + ("_bytes" if len(parts) == 3 else "")
        if value is None or not _METRIC_NAME.fullmatch(name):
            problems.append(f"line {lineno}: cannot parse {line[:80]!r}")
            continue
        fields[name] = value * 1024.0 if len(parts) == 3 else value
    return MemInfo(fields=tuple(fields.items()), problems=tuple(problems))


def _unescape_mount(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> MountTable:
    """Parse /proc/mounts (``device mountpoint fstype options dump pass``)."""
    mounts: list[Mount] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            problems.append(f"line {lineno}: malformed mount line {line[:80]!r}")
            continue
        device, mountpoint = _unescape_mount(parts[0]), _unescape_mount(parts[1])
        mounts.append(Mount(device, mountpoint, parts[2], parts[3]))
    return MountTable(tuple(mounts), tuple(problems))


def select_filesystems(
    mounts: tuple[Mount, ...], mount_points_exclude: re.Pattern[str], fs_types: re.Pattern[str]
) -> tuple[Mount, ...]:
    """The mounts node_exporter reports, sorted by mount point; the first of duplicates wins.

    Patterns are searched, not anchored (Go's ``MatchString``): the defaults anchor themselves.
    """
    seen: dict[tuple[str, str, str], Mount] = {}
    for m in mounts:
        if mount_points_exclude.search(m.mountpoint) or fs_types.search(m.fstype):
            continue
        seen.setdefault((m.mountpoint, m.device, m.fstype), m)
    return tuple(seen[k] for k in sorted(seen))


def clamp_cpu_counters(
    previous: Mapping[int, tuple[float, ...]], current: tuple[CpuTimes, ...]
) -> dict[int, tuple[float, ...]]:
    """node_exporter 1.5's rule for CPU counters that go backwards.

    Each counter keeps its previous value when the new one is lower; a CPU whose idle counter fell
    by ``CPU_JUMP_BACK_S`` or more starts afresh, and so does everything when the set of CPUs
    changed.
    """
    if set(previous) != {c.cpu for c in current}:
        previous = {}
    out: dict[int, tuple[float, ...]] = {}
    for c in current:
        prev = previous.get(c.cpu)
        if prev is None or prev[_IDLE] - c.seconds[_IDLE] >= CPU_JUMP_BACK_S:
            out[c.cpu] = c.seconds
        else:
            out[c.cpu] = tuple(max(p, n) for p, n in zip(prev, c.seconds, strict=True))
    return out


# The reading layer.


@dataclass(frozen=True, slots=True)
class HostSamples:
    """One collection: series keys (``labels.format_key`` form) and their values, index-aligned.

    ``keys`` is the very same list object as the previous collection's when the series set did not
    change (so a consumer may compare by identity); treat it as read-only. ``errors`` names each
    file or mount that could not be read or parsed. ``timestamp`` is the wall-clock time of the
    collection (also the value of ``node_time_seconds``).
    """

    keys: list[bytes]
    values: NDArray[np.float64]
    errors: tuple[str, ...]
    timestamp: float


_LabelPairs = tuple[tuple[str, str], ...]
_KEY_CACHE_MAX = 20_000


class _Batch:
    __slots__ = ("_cache", "keys", "values")

    def __init__(self, cache: dict[tuple[str, _LabelPairs], bytes]) -> None:
        self._cache = cache
        self.keys: list[bytes] = []
        self.values: list[float] = []

    def add(self, name: str, labels: _LabelPairs, value: float) -> None:
        key = self._cache.get((name, labels))
        if key is None:
            key = format_key(name, labels)
            if len(self._cache) >= _KEY_CACHE_MAX:  # mount churn must not grow it without end
                self._cache.clear()
            self._cache[(name, labels)] = key
        self.keys.append(key)
        self.values.append(value)


def _label_safe(s: str) -> str:
    """Mount paths are bytes (read with surrogateescape); labels must be valid UTF-8."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class HostCollector:
    """Reads /proc and ``statvfs`` and returns node_exporter-named samples; see the module doc.

    ``collect`` never raises on an unreadable or malformed file or a failing mount: it skips what
    it cannot read and names it in ``HostSamples.errors`` (also kept as :attr:`errors`). It may be
    called from several threads (an abandoned call can still be stuck in ``statvfs``).

    ``proc_root``, ``clock_wall`` and ``statvfs`` are injectable for tests; ``rootfs`` is
    node_exporter's ``--path.rootfs`` (the host's / when kpimon runs in a container).
    """

    def __init__(
        self,
        proc_root: str = "/proc",
        clock_wall: Callable[[], float] = time.time,
        *,
        rootfs: str = "/",
        mount_points_exclude: str = DEFAULT_MOUNT_POINTS_EXCLUDE,
        fs_types_exclude: str = DEFAULT_FS_TYPES_EXCLUDE,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self._proc = proc_root
        self._clock = clock_wall
        self._rootfs = rootfs.rstrip("/") or "/"
        self._mp_exclude = re.compile(mount_points_exclude)
        self._fs_exclude = re.compile(fs_types_exclude)
        self._statvfs = statvfs
        self._lock = threading.Lock()
        self._cpu: dict[int, tuple[float, ...]] = {}
        self._pending: set[str] = set()  # mount points whose statvfs has not returned yet
        self._key_cache: dict[tuple[str, _LabelPairs], bytes] = {}
        self._last_keys: list[bytes] = []
        self.errors: tuple[str, ...] = ()  # those of the latest collection

    def collect(self) -> HostSamples:
        """Read everything once (blocking; see the module doc on hung mounts)."""
        batch = _Batch(self._key_cache)
        errors: list[str] = []
        success: dict[str, bool] = {}
        success["cpu"] = success["stat"] = self._collect_stat(batch, errors)
        success["loadavg"] = self._collect_loadavg(batch, errors)
        success["meminfo"] = self._collect_meminfo(batch, errors)
        success["filesystem"] = self._collect_filesystems(batch, errors)
        now = self._clock()
        batch.add("node_time_seconds", (), now)
        success["time"] = True
        success["uname"] = self._collect_uname(batch, errors)
        for name in sorted(success):
            batch.add("node_scrape_collector_success", (("collector", name),), float(success[name]))
        keys = batch.keys
        with self._lock:
            if keys == self._last_keys:
                keys = self._last_keys
            else:
                self._last_keys = keys
        self.errors = tuple(errors)
        return HostSamples(keys, np.array(batch.values, dtype=np.float64), self.errors, now)

    def _path(self, name: str) -> str:
        return os.path.join(self._proc, name)

    def _read(self, name: str, errors: list[str]) -> str | None:
        path = self._path(name)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
            return None

    def _report(self, name: str, problems: tuple[str, ...], errors: list[str]) -> bool:
        errors.extend(f"{self._path(name)}: {p}" for p in problems)
        return not problems

    def _collect_stat(self, batch: _Batch, errors: list[str]) -> bool:
        text = self._read("stat", errors)
        if text is None:
            return False
        stat = parse_stat(text)
        with self._lock:
            self._cpu = clamp_cpu_counters(self._cpu, stat.cpus)
            cpus = sorted(self._cpu.items())
        for cpu, seconds in cpus:
            label = str(cpu)
            for mode, value in zip(CPU_MODES, seconds, strict=False):
                batch.add("node_cpu_seconds_total", (("cpu", label), ("mode", mode)), value)
            for mode, value in (("nice", seconds[9]), ("user", seconds[8])):
                batch.add("node_cpu_guest_seconds_total", (("cpu", label), ("mode", mode)), value)
        for name, value in stat.scalars:
            batch.add(name, (), value)
        return self._report("stat", stat.problems, errors)

    def _collect_loadavg(self, batch: _Batch, errors: list[str]) -> bool:
        text = self._read("loadavg", errors)
        if text is None:
            return False
        try:
            loads = parse_loadavg(text)
        except ValueError as exc:
            return self._report("loadavg", (str(exc),), errors)
        for name, value in zip(("node_load1", "node_load5", "node_load15"), loads, strict=True):
            batch.add(name, (), value)
        return True

    def _collect_meminfo(self, batch: _Batch, errors: list[str]) -> bool:
        text = self._read("meminfo", errors)
        if text is None:
            return False
        mem = parse_meminfo(text)
        for name, value in sorted(mem.fields):
            batch.add(name, (), value)
        return self._report("meminfo", mem.problems, errors)

    def _collect_filesystems(self, batch: _Batch, errors: list[str]) -> bool:
        name = "1/mounts"
        text = self._read(name, [])  # /proc/1/mounts may be hidden (hidepid): fall back
        if text is None:
            name = "mounts"
            text = self._read(name, errors)
            if text is None:
                return False
        table = parse_mounts(text)
        ok = self._report(name, table.problems, errors)
        mounts = table.mounts
        if self._rootfs != "/":  # as node_exporter: labels and patterns see the stripped path
            strip = self._rootfs
            mounts = tuple(
                replace(m, mountpoint=m.mountpoint.removeprefix(strip) or "/") for m in mounts
            )
        rows: list[tuple[_LabelPairs, tuple[float, ...] | None]] = []
        for m in select_filesystems(mounts, self._mp_exclude, self._fs_exclude):
            labels: _LabelPairs = (
                ("device", _label_safe(m.device)),
                ("fstype", _label_safe(m.fstype)),
                ("mountpoint", _label_safe(m.mountpoint)),
            )
            stats = self._stat_mount(m.mountpoint, errors)
            if stats is not None:
                stats += (float(m.readonly),)
            rows.append((labels, stats))
        for labels, stats in rows:
            batch.add("node_filesystem_device_error", labels, float(stats is None))
        for i, metric in enumerate(_FS_METRICS):
            for labels, stats in rows:
                if stats is not None:
                    batch.add(metric, labels, stats[i])
        return ok

    def _stat_mount(self, mountpoint: str, errors: list[str]) -> tuple[float, ...] | None:
        path = os.path.join(self._rootfs, mountpoint.lstrip("/"))
        with self._lock:
            if mountpoint in self._pending:
                msg = "an earlier call has not returned (hung mount?)"
                errors.append(f"statvfs {_label_safe(path)}: {msg}")
                return None
            self._pending.add(mountpoint)
        try:
            st = self._statvfs(path)
        except OSError as exc:
            errors.append(f"statvfs {_label_safe(path)}: {exc.strerror or exc}")
            return None
        finally:
            with self._lock:
                self._pending.discard(mountpoint)
        # node_exporter multiplies by f_bsize (statfs' Bsize), not f_frsize; so do we.
        sizes = tuple(float(n) * float(st.f_bsize) for n in (st.f_blocks, st.f_bfree, st.f_bavail))
        return (*sizes, float(st.f_files), float(st.f_ffree))

    def _collect_uname(self, batch: _Batch, errors: list[str]) -> bool:
        domain = self._read("sys/kernel/domainname", errors)
        if domain is None:
            return False
        u = os.uname()
        labels: _LabelPairs = (
            ("domainname", domain.strip()),
            ("machine", u.machine),
            ("nodename", u.nodename),
            ("release", u.release),
            ("sysname", u.sysname),
            ("version", u.version),
        )
        batch.add("node_uname_info", labels, 1.0)
        return True


_FS_METRICS = tuple(
    f"node_filesystem_{m}"
    for m in ("size_bytes", "free_bytes", "avail_bytes", "files", "files_free", "readonly")
)
