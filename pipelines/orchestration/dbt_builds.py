"""The two ways TicketFlow builds the dbt project, shared by Dagster's jobs and bench/marts.py.

- The frequent build (Dagster's `sales_marts` job, every few minutes and on new CDC data)
  builds the tables and incremental models and runs the tests that read them. Each test
  checks the rows its table's latest build wrote (`dbt_project/macros/tests.sql`), so an
  incremental build tests what it wrote, not millions of rows it did not touch. Views are
  left out: they change only with the code, and a deploy (or the daily build) rebuilds them.
  Unit tests are left out of both: they check SQL logic, not data, and CI runs them.
- The daily build (Dagster's `reconciliation` job) builds everything and tests every row.
"""

FREQUENT_EXCLUDE = "config.materialized:view"
NO_UNIT_TESTS = ("--exclude-resource-type", "unit_test")
EVERY_ROW = ("--vars", '{"test_every_row": true}')

FREQUENT_BUILD_ARGS = ("build", "--exclude", FREQUENT_EXCLUDE, *NO_UNIT_TESTS)
DAILY_BUILD_ARGS = ("build", *NO_UNIT_TESTS, *EVERY_ROW)
