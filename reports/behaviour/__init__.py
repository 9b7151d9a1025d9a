"""Behavioural widget types: funnel, retention, cohort, lifecycle, stickiness (each module registers itself)."""
