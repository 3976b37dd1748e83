"""The CDC relay: every committed change in PostgreSQL, streamed into ClickHouse raw tables.

Arrows, one module each: `pgoutput` decodes the logical-decoding stream, `tables` maps
PostgreSQL tables to ClickHouse ones (PeerDB's layout), `values` turns PostgreSQL text values
into ClickHouse TSV fields, `snapshot` copies existing rows, `relay` runs the loop and owns
the slot's position, `status` reports lag and progress.
"""
