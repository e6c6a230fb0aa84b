"""The state journal: KPI phases, timers and the transition log in SQLite (``kpimon.db``).

See :mod:`kpimon.journal.journal` for the commit protocol and durability choice, and
:mod:`kpimon.journal.schema` for the schema and its migrations.
"""

from __future__ import annotations

from kpimon.errors import JournalError
from kpimon.journal.journal import DB_NAME, Journal
from kpimon.journal.schema import SCHEMA_VERSION
from kpimon.journal.translog import TransitionRecord

__all__ = ["DB_NAME", "SCHEMA_VERSION", "Journal", "JournalError", "TransitionRecord"]
