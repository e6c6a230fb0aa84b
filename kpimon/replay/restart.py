"""How a replay persists KPI state: the daemon's SQLite journal (:mod:`kpimon.journal`).

A replay journals only when it has to: with ``--restart-at`` (to a temporary directory, which
the command removes afterwards) or with ``--storage.path DIR``. Then every tick is committed by
:meth:`Engine.tick <kpimon.kpi.engine.Engine.tick>` exactly as in the daemon, and a simulated
restart (:meth:`Persistence.restart`) does what a real one does: close the journal, open it
again, build a new engine over a new, empty store, and
:meth:`~kpimon.kpi.engine.Engine.restore` the state from the journal.

A replay's restart has no downtime: the new process restores at the time of the last committed
tick (the journal's heartbeat), so timers carry on as if the daemon had never stopped, and the
first ``grace`` after it (up to the restart, plus one interval of the data) counts as "not yet
scraped" rather than missing data (ARCHITECTURE §5 "Restarts"). A restart after an outage
(``kpimon test``'s ``gap``) restores at the restart time instead, as the daemon does: the time
since the last committed tick is the outage, to which ``outage_tolerance`` applies.

Shared by ``kpimon replay`` and ``kpimon test`` (:mod:`kpimon.ruletest.runner`). No I/O beyond
the journal's own (and the temporary directory of :meth:`Persistence.temporary`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence

from kpimon.config.models import DEFAULT_OUTAGE_TOLERANCE_S, Kpi
from kpimon.journal import Journal
from kpimon.kpi.engine import Engine
from kpimon.kpi.machine import PHASES, Transition
from kpimon.store import Store

TEMPORARY_SYNCHRONOUS = "OFF"
"""SQLite ``synchronous`` for a replay's temporary journal: nothing outlives the process."""
STORAGE_SYNCHRONOUS = "NORMAL"
"""For ``--storage.path``: with WAL, NORMAL survives the process being killed at any point
(only a power cut may lose the last commits, which a re-run replays again)."""


class Persistence:
    """A replay's journal (mutable; :meth:`close` when done)."""

    def __init__(
        self,
        directory: str,
        *,
        synchronous: str,
        outage_tolerance_s: float = DEFAULT_OUTAGE_TOLERANCE_S,
    ) -> None:
        """Open the journal under ``directory``.

        Raises:
            JournalError: it cannot be opened (the message says what to do).
        """
        self.directory = directory
        self.synchronous = synchronous
        self.outage_tolerance_s = outage_tolerance_s
        self.journal = Journal.open(directory, synchronous=synchronous)

    @classmethod
    @contextlib.contextmanager
    def temporary(
        cls, prefix: str, *, outage_tolerance_s: float = DEFAULT_OUTAGE_TOLERANCE_S
    ) -> Iterator[Persistence]:
        """A journal in a new temporary directory, closed and removed when the block ends.

        Raises:
            JournalError: it cannot be opened.
        """
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            persistence = cls(
                tmp, synchronous=TEMPORARY_SYNCHRONOUS, outage_tolerance_s=outage_tolerance_s
            )
            try:
                yield persistence
            finally:
                persistence.close()

    @property
    def heartbeat(self) -> float | None:
        """The time of the last committed tick; None for a journal without progress."""
        return self.journal.heartbeat

    def engine(self, kpis: Sequence[Kpi], store: Store) -> Engine:
        """The first process's engine (journaling every tick)."""
        return Engine(kpis, store, self.journal)

    def resume(self, engine: Engine) -> list[tuple[str, Transition]]:
        """Restore ``engine`` (fresh) from the journal's last committed tick, with no outage.

        Returns every transition the journal logged so far, in order.
        """
        heartbeat = self.journal.heartbeat
        if heartbeat is None:
            return []
        engine.restore(heartbeat, outage_tolerance_s=self.outage_tolerance_s, grace_s=0.0)
        return [
            (
                r.kpi,
                Transition(
                    r.t,
                    r.labels,
                    r.level,
                    PHASES.index(r.from_phase),
                    PHASES.index(r.to_phase),
                    r.value,
                    r.threshold,
                    r.reason,
                    r.flapping,
                ),
            )
            for r in self.journal.transitions()
        ]

    def restart(
        self,
        kpis: Sequence[Kpi],
        store: Store,
        at: float,
        interval_s: float,
        *,
        outage: bool = False,
    ) -> tuple[Engine, list[tuple[str, Transition]]]:
        """A new process at ``at``: the journal reopened, a new engine over ``store`` restored.

        ``interval_s``: the longest scrape interval (the first one after the start is "not yet
        scraped", not missing data). ``outage``: kpimon was down from its last committed tick
        until ``at``, so the state is restored at ``at``, across that outage, as the daemon
        restores it; otherwise the restart has no downtime.

        Returns the engine and the transitions the restore made (none without an outage).
        """
        heartbeat = self.journal.heartbeat
        self.journal.close()
        self.journal = Journal.open(self.directory, synchronous=self.synchronous)
        engine = Engine(kpis, store, self.journal)
        if heartbeat is None:
            return engine, []
        if outage:
            restored = engine.restore(
                at, outage_tolerance_s=self.outage_tolerance_s, grace_s=interval_s
            )
            return engine, list(restored)
        grace_s = max(0.0, at - heartbeat) + interval_s
        restored = engine.restore(
            heartbeat, outage_tolerance_s=self.outage_tolerance_s, grace_s=grace_s
        )
        return engine, list(restored)

    def close(self) -> None:
        self.journal.close()
