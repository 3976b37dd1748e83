"""The two ways TicketFlow builds the dbt project, shared by Dagster's jobs and bench/marts.py.

- The frequent build (Dagster's `sales_marts` job, every few minutes and on new CDC data)
  builds the tables and incremental models and runs the tests that read them. Each test
  checks the rows its table's latest build wrote (`dbt_project/macros/tests.sql`), so an
  incremental build tests what it wrote, not millions of rows it did not touch. Views are
  left out: they change only with the code, and a deploy (or the daily build) rebuilds them.
  Unit tests are left out of both: they check SQL logic, not data, and CI runs them.
- The daily build (Dagster's `reconciliation` job) builds everything and tests every row.

Both carry the run tag `DBT_RUN_TAG_KEY`, which the Dagster instance limits to one run at a
time (two incremental builds of the same tables at once would insert the same keys twice).
"""

DBT_RUN_TAG_KEY = "ticketflow/dbt"
# The tables and incremental models; dbt then takes every test that reads one of them, also
# those that read a view beside it (an `--exclude` of the views would drop those too).
FREQUENT_SELECT = "config.materialized:table config.materialized:incremental"
# Checks of a table's column types (`never_null`): only a build from scratch changes those.
FREQUENT_EXCLUDE = "tag:column_types"
NO_UNIT_TESTS = ("--exclude-resource-type", "unit_test")
EVERY_ROW = ("--vars", '{"test_every_row": true}')

FREQUENT_BUILD_ARGS = (
    "build",
    "--select",
    *FREQUENT_SELECT.split(),
    "--exclude",
    FREQUENT_EXCLUDE,
    *NO_UNIT_TESTS,
)
