"""kpimon: a real-time IT-operations KPI monitor.

kpimon scrapes Prometheus exposition endpoints and this host, evaluates KPI rules written in
YAML with sustained-threshold semantics, and exports every KPI as Prometheus gauges.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
