"""The explicit registry of source types.

A plain, greppable dict from a source type name to the class that builds it: no directory scan,
no import of dotted paths named in config. The application turns config into source objects
(:class:`~kpimon.sources.Source`) and hands them to :class:`kpimon.scheduler.ScrapeManager`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from kpimon.sources import Source
from kpimon.sources.probe import ProbeSource
from kpimon.sources.scrape import Batch, HostSource, HttpSource

__all__ = ["SOURCE_TYPES", "Batch", "Source"]

SOURCE_TYPES: Final[Mapping[str, Callable[..., Source]]] = MappingProxyType(
    {
        "scrape": HttpSource,  # scrape_configs: one per target URL
        "host": HostSource,  # host: the built-in node_exporter-style collector
        "probe": ProbeSource,  # probes: one per blackbox-style HTTP(S)/TCP probe
    }
)
"""Source type name -> the class that builds a source of that type."""
