"""An SLO's 30-day ledger survives a restart through the journal (kpimon.journal.auxstate)."""

from __future__ import annotations

import pytest

from kpimon.journal import Journal, auxstate
from kpimon.slo.tracker import LEDGER_KEY_PREFIX, SloTracker
from tests.unit.test_slo_engine import RATIO_SLO, Rig, hour


def save_all(journal: Journal, tracker: SloTracker, t: float) -> int:
    saves = tracker.unsaved_ledgers()
    for key, fingerprint, data in saves:
        auxstate.save(journal.connection, key, fingerprint, t, data)
    return len(saves)


def loader(journal: Journal):  # type: ignore[no-untyped-def]
    def load(key: str, fingerprint: str) -> bytes | None:
        saved = auxstate.load(journal.connection, key, fingerprint)
        return None if saved is None else saved[1]

    return load


def test_a_restarted_tracker_counts_the_window_it_had(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    t = rig.run(*hour(1200, {10: 2, 100: 1}))
    bad, total, coverage = rig.tracker._tracked["checkout"].ledger.sums(t)
    assert total == pytest.approx(1200, rel=0.01)
    assert bad == pytest.approx(3)
    assert coverage > 0
    with Journal.open(tmp_path / "data") as journal:
        assert save_all(journal, rig.tracker, t) == 1
        assert save_all(journal, rig.tracker, t) == 0  # nothing new since
    with Journal.open(tmp_path / "data") as journal:  # a new process
        fresh = SloTracker(rig.cfg.slos)
        assert fresh._tracked["checkout"].ledger.sums(t) == (0.0, 0.0, 0.0)
        assert fresh.restore(loader(journal)) == 1
        assert fresh._tracked["checkout"].ledger.sums(t) == (bad, total, coverage)
        assert fresh.restore(loader(journal)) == 0  # a counting ledger is left alone
        # An hour of downtime later, the hour before it still counts; coverage is what it was.
        assert fresh._tracked["checkout"].ledger.sums(t + 3600) == (bad, total, coverage)


def test_a_changed_sli_starts_a_new_ledger_and_removed_slos_are_forgotten(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    t = rig.run(*hour(1200, {10: 2}))
    with Journal.open(tmp_path / "data") as journal:
        save_all(journal, rig.tracker, t)
    changed = RATIO_SLO.replace('code=~"5.."', 'code=~"5..|429"')
    (tmp_path / "other").mkdir()
    other = Rig(tmp_path / "other", changed)
    with Journal.open(tmp_path / "data") as journal:
        fresh = SloTracker(other.cfg.slos)
        assert fresh.restore(loader(journal)) == 0  # counted other events: not restored
        auxstate.keep_only(journal.connection, LEDGER_KEY_PREFIX, [])
        assert auxstate.load(journal.connection, LEDGER_KEY_PREFIX + "checkout", "x") is None
        rows = journal.connection.execute("SELECT count(*) FROM aux_state").fetchone()
        assert rows == (0,)
