"""Report computations: metrics, time series, breakdowns, funnels, cohorts, retention."""
