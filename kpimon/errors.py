"""The kpimon exception tree.

::

    KpimonError
    ├── ConfigError          one or more problems in a config or rule file (each with a position)
    ├── PromQLError          an expression kpimon cannot parse or does not support
    ├── ScrapeError          a target could not be scraped (carries the target URL)
    ├── EvaluationError      an expression failed at evaluation time (e.g. many-to-many match)
    └── JournalError         the state journal cannot be opened (path, what is wrong, what to do)

Errors always say where: a config problem carries FILE:LINE:COL, a scrape problem the target URL.
"""

from __future__ import annotations

from dataclasses import dataclass


class KpimonError(Exception):
    """Base class of every error kpimon raises on purpose."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where something stands in a file: 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One config problem: where, which key path, what is wrong."""

    position: Position
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.position}: {self.path}: {self.message}"
        return f"{self.position}: {self.message}"


class ConfigError(KpimonError):
    """A config or rule file is invalid; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.position.file, p.position.line, p.position.column)
        )
        super().__init__("\n".join(str(p) for p in self.problems))


class PromQLError(KpimonError):
    """An expression that cannot be parsed, or uses a construct kpimon does not support.

    ``offset`` is the 0-based character offset of the offending construct inside the expression
    text when it is known, so that a config loader can turn it into a line and column.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.message = message
        self.offset = offset
        super().__init__(message)


class EvaluationError(KpimonError):
    """An expression failed at evaluation time (as Prometheus would fail the query)."""


class ScrapeError(KpimonError):
    """A scrape failed; the message always names the target URL."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.message = message
        super().__init__(f"{url}: {message}")


class JournalError(KpimonError):
    """The state journal (``kpimon.db`` under ``--storage.path``) cannot be opened or used.

    The message is one line: the path, what is wrong, and what to do about it.
    """
