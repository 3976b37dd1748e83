"""The embedded warehouse: one process that owns the chdb data directory and serves it over
ClickHouse's HTTP interface, so every other process talks to it as to a ClickHouse server."""
