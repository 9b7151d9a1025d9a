"""Behavioural widget types: funnel, retention, cohort, lifecycle, stickiness (each module registers itself)."""

from . import cohort, funnel, lifecycle, retention, stickiness  # noqa: F401
