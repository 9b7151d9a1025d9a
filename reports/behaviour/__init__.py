"""Behavioural widget types: funnel, retention, cohort, lifecycle, stickiness (each module registers itself)."""

from . import funnel  # noqa: F401
