"""backfill: re-run data pipelines over historical time ranges."""

__version__ = "0.1.0"
