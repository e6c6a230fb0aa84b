"""Sources of samples: exposition scraping, this host, probes.

This package module holds only the :class:`Source` interface the scheduler drives (kept free of
imports so that importing the pure parser does not pull in aiohttp); the explicit registry of
source types is :data:`kpimon.sources.registry.SOURCE_TYPES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kpimon.labels import Labels
    from kpimon.sources.scrape import Batch

__all__ = ["Source"]


class Source(Protocol):
    """One target the scheduler collects from.

    The scheduler compares sources with ``==`` on reload: a source equal to the running one keeps
    its loop, a different one (same ``id``) restarts it. Implementations compare by their
    definition (URL, limits, labels...), not by identity, and are hashable.
    """

    @property
    def id(self) -> str:
        """Unique target id, e.g. ``"node/http://127.0.0.1:9100/metrics"`` or ``"host"``."""
        ...

    @property
    def labels(self) -> Labels:
        """Target labels attached to every series: ``job``, ``instance``, static labels."""
        ...

    @property
    def interval_s(self) -> float:
        """Collection interval in seconds (> 0)."""
        ...

    async def collect(self) -> Batch:
        """Collect once.

        Raises:
            ScrapeError: the collection failed; the message names the target URL.
        """
        ...
