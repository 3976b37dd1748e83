"""Running the dbt project from tests, and comparing what two builds left."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipelines.orchestration.dbt_builds import run_dbt
from ticketflow.settings import Settings

# Stamps of when a build ran, which a full refresh sets anew; every other column must agree.
BUILD_STAMPS = ("built_at", "charge_noticed_at")


def dbt(settings: Settings, work: Path, *command: str) -> subprocess.CompletedProcess:
    """`run_dbt`, given up on after 15 minutes rather than hanging a test run."""
    return run_dbt(settings, work, *command, timeout=900)


def contents(ch) -> dict[str, tuple[int, int]]:
    """Every table the dbt project builds: (rows, an order-free hash of the rows, build
    stamps left out)."""
    tables = ch.query(
        "SELECT database, name FROM system.tables WHERE database IN ('intermediate', 'marts') "
        "AND engine != 'View' AND name NOT LIKE '%dbt%'"
    ).result_rows
    found = {}
    for database, table in tables:
        columns = ch.query(
            "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} "
            "AND name NOT IN {stamps:Array(String)} ORDER BY position",
            parameters={"d": database, "t": table, "stamps": list(BUILD_STAMPS)},
        ).result_rows
        row = ", ".join(f"`{name}`" for (name,) in columns)
        found[f"{database}.{table}"] = ch.query(
            f"SELECT count(), sum(cityHash64(toString(tuple({row})))) FROM `{database}`.`{table}`"
        ).result_rows[0]
    return found
