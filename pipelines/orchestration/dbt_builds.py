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

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.orchestration.warehouse_env import dbt_environment
from ticketflow.settings import Settings

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

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


def run_dbt(
    settings: Settings, work: Path, *args: str, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """dbt against the warehouse `settings` name, with a target and log folder of its own
    under `work`: runs of the project side by side (Dagster, tests, the benchmark) would
    otherwise write over each other's manifest and partial-parse file."""
    return subprocess.run(
        [
            DBT_EXECUTABLE,
            *args,
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
        ],
        env={**os.environ, **dbt_environment(settings)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
