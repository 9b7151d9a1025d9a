"""Widget types over counts: metric, time_series, table (each module registers itself)."""

from erp.reports.widgets import metric, table, time_series  # noqa: F401  (registration)
