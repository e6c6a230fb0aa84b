"""The stores' samples saved at shutdown and replayed at start-up, so that a restart (a deploy,
a reload of the unit) does not leave range functions reading only the samples since the start.

The journal keeps every phase and timer; the samples live in memory. Without them, after a
restart ``avg_over_time(probe_success[1d])`` or an SLO's 1h burn rate would be computed over a
few minutes of uptime and could page. At a clean shutdown the daemon writes each store's
history (:meth:`kpimon.store.Store.history`) to one file under ``--storage.path`` and replays
it at the next start (:func:`kpimon.store.core.replay`): the samples, staleness markers and
gaps are as the scrapes made them, with the outage as one more gap. A crash writes nothing; the
next start then has only what it scrapes (docs/rules.md).

Format: a NumPy ``.npz`` without pickles: ``meta`` (JSON: version, time saved, per target its
name and labels) and per target ``i`` the arrays ``k{i}`` (its series keys, newline-joined
bytes), ``t{i}`` (row times in ms, int64) and ``v{i}`` (values, float64, rows × keys). Written
to a temporary file, synced, then renamed: a file is whole or absent.
"""

from __future__ import annotations

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
    """Write ``histories`` to ``path`` (atomically); returns how many targets were written.

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
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(targets)


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
