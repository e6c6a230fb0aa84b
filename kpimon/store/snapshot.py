"""The stores' samples saved to disk and replayed at start-up, so that a restart (a deploy, a
reload of the unit, a crash) does not leave range functions reading only the samples since the
start.

The journal keeps every phase and timer; the samples live in memory. Without them, after a
restart ``avg_over_time(probe_success[1d])`` or an SLO's 1h burn rate would be computed over a
few minutes of uptime and could page. The daemon writes each store's history
(:meth:`kpimon.store.Store.history`) to one file under ``--storage.path`` every
``storage.sample_snapshot_interval`` (default 5m; :mod:`kpimon.snapshots` copies the history
on the event loop and calls :func:`save` in a worker thread) and once more at a clean shutdown,
and replays the file at the next start (:func:`kpimon.store.core.replay`): the samples,
staleness markers and gaps are as the scrapes made them, with the outage as one more gap. After
a crash the next start replays the last periodic snapshot, so the samples scraped between it
and the crash are part of that gap (docs/rules.md). This module only writes and reads a file;
it never awaits.

Format: a NumPy ``.npz`` without pickles: ``meta`` (JSON: version, time saved, per target its
name and labels) and per target ``i`` the arrays ``k{i}`` (its series keys, newline-joined
bytes), ``t{i}`` (row times in ms, int64) and ``v{i}`` (values, float64, rows × keys). Written
to a temporary file, synced, then renamed (and the directory synced): a file is whole or
absent, and a failed write leaves the previous file as it was. May run in a worker thread: it
reads only the histories it is given.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np

from kpimon.store.core import TargetHistory

VERSION: Final = 1


class SnapshotError(ValueError):
    """A snapshot file that cannot be read (the message says which file and why)."""


def save(path: Path, histories: Iterable[TargetHistory], t: float) -> int:
    """Write ``histories`` to ``path`` (atomically, then synced); returns how many targets
    were written.

    Raises:
        OSError: the file cannot be written.
    """
    arrays: dict[str, np.ndarray] = {}
    targets = []
    for i, h in enumerate(histories):
        targets.append({"name": h.name, "labels": [list(p) for p in h.labels]})
        arrays[f"k{i}"] = np.frombuffer(b"\n".join(h.keys), dtype=np.uint8)
        arrays[f"t{i}"] = np.ascontiguousarray(h.times_ms, dtype=np.int64)
        arrays[f"v{i}"] = np.ascontiguousarray(h.values, dtype=np.float64)
    meta = json.dumps({"version": VERSION, "t": t, "targets": targets}, ensure_ascii=False)
    arrays["meta"] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: give the space back
            tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)  # the rename itself survives a power loss
    return len(targets)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Path) -> tuple[float, list[TargetHistory]]:
    """The time a snapshot was saved and its histories.

    Raises:
        SnapshotError: the file is not a snapshot this kpimon wrote, or is damaged.
        OSError: the file cannot be read.
    """
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            if meta.get("version") != VERSION:
                raise SnapshotError(f"{path}: unknown snapshot version {meta.get('version')!r}")
            out = []
            for i, target in enumerate(meta["targets"]):
                blob = bytes(z[f"k{i}"])
                keys = blob.split(b"\n") if blob else []
                times = np.asarray(z[f"t{i}"], dtype=np.int64)
                values = np.asarray(z[f"v{i}"], dtype=np.float64)
                if values.shape != (len(times), len(keys)):
                    raise SnapshotError(f"{path}: target {i} has misshapen values")
                out.append(
                    TargetHistory(
                        name=str(target["name"]),
                        labels=tuple((str(k), str(v)) for k, v in target["labels"]),
                        keys=keys,
                        times_ms=times,
                        values=values,
                    )
                )
            return float(meta["t"]), out
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile, io.UnsupportedOperation) as exc:
        raise SnapshotError(f"{path}: not a readable sample snapshot ({exc})") from None
