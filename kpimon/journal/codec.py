"""Packing a KPI state's series rows into journal records and back, and label sets into text.

Every array :attr:`KpiState.PERSISTED_ARRAYS` names is saved, whatever it is: the record of one
series is that series' slice of each array (all levels of a per-level array), as one numpy
structured record; a chunk of records is their bytes, one after the other. The record's layout
(names, dtypes, shapes) is saved with the KPI, so a journal restores by name: an array added to
the state after the journal was written keeps a new series' defaults, and one dropped since is
ignored. Adding an array to the state is a one-line change in ``machine.py`` and none here.

Pure: no I/O.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import numpy.typing as npt

from kpimon.kpi.machine import F64, KpiState
from kpimon.labels import Labels

Layout = tuple[tuple[str, int, str, tuple[int, ...]], ...]
"""Per persisted array: name, its series axis, dtype (``numpy.dtype.str``), per-series shape."""


def layout(state: KpiState) -> Layout:
    """The record layout of ``state``'s persisted arrays."""
    out = []
    for name in state.PERSISTED_ARRAYS:
        a: npt.NDArray[np.generic] = getattr(state, name)
        axis = 1 if name in state.LEVEL_ARRAYS else 0
        shape = a.shape[:axis] + a.shape[axis + 1 :]
        out.append((name, axis, a.dtype.str, tuple(int(d) for d in shape)))
    return tuple(out)


def layout_text(lay: Layout) -> str:
    return json.dumps([list(f) for f in lay], separators=(",", ":"))


def parse_layout(text: str) -> Layout:
    """A layout saved by :func:`layout_text`.

    Raises:
        ValueError: the text is not a layout.
    """
    try:
        return tuple(
            (str(n), int(ax), str(dt), tuple(int(d) for d in shp))
            for n, ax, dt, shp in json.loads(text)
        )
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid layout {text[:80]!r}") from exc


@functools.lru_cache(maxsize=64)
def record_dtype(lay: Layout) -> np.dtype[np.void]:
    return np.dtype([(name, np.dtype(dt), shape) for name, _, dt, shape in lay])


def pack(state: KpiState, rows: npt.NDArray[np.intp], lay: Layout) -> bytes:
    """The records of ``rows``, one after the other."""
    rec = np.empty(len(rows), dtype=record_dtype(lay))
    for name, axis, _, _ in lay:
        a: npt.NDArray[np.generic] = getattr(state, name)
        taken = a.take(rows, axis=axis)
        # The series axis first; it is 0 or 1 (:func:`layout`), and swapaxes costs a third of
        # what moveaxis does per call (13 arrays a tick).
        rec[name] = taken if axis == 0 else taken.swapaxes(0, 1)
    return rec.tobytes()


def unpack(records: bytes, lay: Layout) -> dict[str, npt.NDArray[np.generic]]:
    """The arrays of ``records`` (packed with layout ``lay``), series along their series axis.

    Raises:
        ValueError: the bytes are not whole records of the layout.
    """
    dt = record_dtype(lay)
    if len(records) % dt.itemsize:
        raise ValueError("state records do not match their KPI's layout")
    rec = np.frombuffer(records, dtype=dt)
    return {name: np.moveaxis(rec[name], 0, axis) for name, axis, _, _ in lay}


def labels_text(labels: Labels) -> str:
    """A label set as JSON pairs, ``[["instance","a:1"],["job","node"]]``."""
    return json.dumps(labels, separators=(",", ":"))


def parse_labels(text: str) -> Labels:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


def parse_many_labels(parsed: list[list[list[str]]]) -> list[Labels]:
    """Label sets from a parsed JSON array of them (a restore reads 100k at once)."""
    return [tuple((k, v) for k, v in p) for p in parsed]


def latest(
    chunks: list[tuple[float, str, str]],
) -> tuple[list[Labels], npt.NDArray[np.intp], F64, list[str]]:
    """Replay a KPI's chunks, each (tick, label sets of its records, label sets forgotten; one
    :func:`labels_text` per line), in order.

    Returns the live series in the state machine's order (creation order: a series first seen
    in a later chunk comes after those before it; a series forgotten and seen again, at the
    end), the index of each one's latest record among all the chunks' records, the tick of
    that record's chunk, and each live series' :func:`labels_text` as saved.
    """
    where: dict[str, int] = {}
    ticks: list[float] = []
    for t, labels, gone in chunks:
        for text in gone.split("\n") if gone else ():
            where.pop(text, None)
        start = len(ticks)
        batch = labels.split("\n") if labels else []
        for i, text in enumerate(batch):
            where[text] = start + i  # an existing key keeps its place
        ticks.extend([t] * len(batch))
    rows = np.fromiter(where.values(), dtype=np.intp, count=len(where))
    texts = list(where)
    live = parse_many_labels(json.loads("[" + ",".join(texts) + "]"))
    return live, rows, np.asarray(ticks, dtype=np.float64)[rows], texts
