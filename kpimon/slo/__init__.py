"""SLOs and service health (docs/slo.md).

``model`` the parsed definitions, ``compile`` an SLO → ordinary KPIs, ``tracker`` the
``kpimon_slo_*`` numbers per tick (SLI per window, the SLO-window ledger), ``health`` ITSI's
service health score. Pure: no I/O, never awaits. Import the submodules directly (this package
imports nothing, so :mod:`kpimon.config.models` can use ``model`` without a cycle).
"""
