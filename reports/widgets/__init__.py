"""Widget types over counts: metric, time_series, table (each module registers itself)."""
