"""dbt-clickhouse, unchanged, builds a project against the warehouse's HTTP port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import clickhouse_connect

FIXTURE = Path(__file__).parents[2] / "fixtures" / "dbt_minimal"


def _dbt_build(project: Path, port: int) -> subprocess.CompletedProcess:
    dbt = Path(sys.executable).with_name("dbt")
    return subprocess.run(
        [str(dbt), "build", "--project-dir", str(project), "--profiles-dir", str(project)],
        env={**os.environ, "WAREHOUSE_PORT": str(port), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dbt_build_runs_seed_table_incremental_and_tests(warehouse, tmp_path):
    project = tmp_path / "dbt_minimal"
    shutil.copytree(FIXTURE, project)
    port = warehouse.warehouse_port

    first = _dbt_build(project, port)
    assert first.returncode == 0, first.stdout + first.stderr
    ch = clickhouse_connect.get_client(host="127.0.0.1", port=port, database="dbt_minimal")
    assert "PASS=8 WARN=0 ERROR=0 SKIP=0" in first.stdout
    assert ch.query(
        "SELECT customer, total_minor FROM customer_totals ORDER BY customer"
    ).result_rows == [
        ("ana", 1700),
        ("ben", 3400),
    ]

    # New and changed rows: the second run must take the incremental path and upsert by key.
    seed = project / "seeds" / "orders_seed.csv"
    seed.write_text(
        seed.read_text().replace("3,ana,500,pending", "3,ana,500,paid") + "4,cy,900,paid\n"
    )
    second = _dbt_build(project, port)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "PASS=8 WARN=0 ERROR=0 SKIP=0" in second.stdout
    rows = ch.query("SELECT order_id, status FROM orders_latest ORDER BY order_id").result_rows
    assert rows == [(1, "paid"), (2, "paid"), (3, "paid"), (4, "paid")]
    log = (project / "logs" / "dbt.log").read_text()
    assert "__dbt_new_data" in log  # the incremental materialization ran, not a rebuild
