"""Running the dbt project from tests, and comparing what two builds left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.orchestration.warehouse_env import dbt_environment
from ticketflow.settings import Settings

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
# Stamps of when a build ran, which a full refresh sets anew; every other column must agree.
BUILD_STAMPS = ("built_at", "charge_noticed_at")


def dbt(settings: Settings, work: Path, *command: str) -> subprocess.CompletedProcess:
    """dbt with a target and log folder of its own, so that concurrent runs of the project
    (other tests, Dagster) do not write over each other's manifest and logs."""
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            *command,
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
        ],
        env={**os.environ, **dbt_environment(settings)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


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
