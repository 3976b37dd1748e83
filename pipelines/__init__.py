"""Data pipelines: the CDC relay (PostgreSQL -> ClickHouse), processor ingestion, Dagster."""
