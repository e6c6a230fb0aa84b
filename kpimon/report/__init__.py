"""``kpimon report``: the periodic KPI report from the journal (docs/reports.md).

``period`` the calendar period, ``compute`` the arithmetic (pure), ``render`` markdown and JSON,
``html`` the self-contained HTML with one SVG chart per KPI, ``command`` the journal reading and
the command. Import the submodules directly.
"""
