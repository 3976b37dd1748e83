"""Dagster: dbt models as assets, the processor ingestion, checks, schedules and a sensor."""
