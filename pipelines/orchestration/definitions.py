"""TicketFlow's Dagster definitions: `dagster dev -m pipelines.orchestration.definitions`.

- every dbt model is an asset, and every dbt test an asset check (dagster-dbt);
- the processor's objects (`raw.stripe_*`) are one Python asset the marts depend on;
- the CDC relay's raw tables are an external asset with a freshness check;
- "books balance" checks the sales marts against PostgreSQL per event;
- the sales marts build every few minutes and when new CDC data has arrived; the
  reconciliation daily.
"""

import os
import subprocess
import sys
from pathlib import Path

import clickhouse_connect
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    sensor,
)
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets, get_asset_key_for_model

from pipelines.orchestration import checks
from pipelines.orchestration.warehouse_env import dbt_environment
from pipelines.stripe_ingest.ingest import ingest_from_settings
from ticketflow.settings import get_settings

SETTINGS = get_settings()
os.environ.update({k: v for k, v in dbt_environment(SETTINGS).items() if k not in os.environ})

DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))
DBT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT_PROJECT = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)
if not DBT_PROJECT.manifest_path.exists() or os.environ.get("DAGSTER_IS_DEV_CLI"):
    # The manifest the assets are built from: parse the project (about 3 s).
    subprocess.run(
        [DBT_EXECUTABLE, "parse", "--project-dir", DBT_DIR, "--profiles-dir", DBT_DIR, "--quiet"],
        check=True,
    )

CDC_TABLES = AssetSpec(
    key=AssetKey(["cdc_raw_tables"]),
    description="PostgreSQL's tables in ClickHouse, kept by the CDC relay (pipelines/cdc).",
    group_name="sources",
)


@dbt_assets(manifest=DBT_PROJECT.manifest_path)
def ticketflow_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


@asset(
    group_name="sources",
    description="Balance transactions, charges, refunds, disputes "
    "and payouts from the payment processor, incrementally by `created`.",
)
def stripe_objects() -> MaterializeResult:
    results = ingest_from_settings(SETTINGS)
    return MaterializeResult(
        metadata={kind: getattr(result, "rows", 0) for kind, result in results.items()}
    )


@asset_check(asset=CDC_TABLES.key, description="The relay is at most five minutes behind.")
def cdc_relay_is_fresh() -> AssetCheckResult:
    verdict = checks.relay_is_fresh(SETTINGS)
    return AssetCheckResult(
        passed=verdict.passed, description=verdict.description, metadata=verdict.metadata
    )


DAILY_SALES = get_asset_key_for_model([ticketflow_dbt_models], "rpt_daily_sales")


@asset_check(asset=DAILY_SALES, description="Net money per event equals PostgreSQL's ledger.")
def books_balance() -> AssetCheckResult:
    verdict = checks.books_balance(SETTINGS)
    return AssetCheckResult(
        passed=verdict.passed, description=verdict.description, metadata=verdict.metadata
    )


DBT_MODELS = AssetSelection.assets(ticketflow_dbt_models)
sales_marts_job = define_asset_job("sales_marts", selection=DBT_MODELS)
reconciliation_job = define_asset_job(
    "reconciliation",
    selection=AssetSelection.assets(stripe_objects) | DBT_MODELS,
)


# On from the start (Dagster's default is off): a platform that has just been started should
# keep its marts fresh without someone switching each automation on first.
@sensor(
    job=sales_marts_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING
)
def new_cdc_data(context: SensorEvaluationContext):
    """Build the sales marts when the relay has synced past the last build's position."""
    client = clickhouse_connect.get_client(dsn=SETTINGS.effective_clickhouse_url)
    rows = client.query(
        f"SELECT max(confirmed_lsn) FROM {SETTINGS.cdc_database}._relay_status WHERE rows > 0"
    ).result_rows
    position = str(rows[0][0]) if rows and rows[0][0] else None
    if position is None or position == context.cursor:
        return SkipReason("no new CDC data since the last build")
    context.update_cursor(position)
    return RunRequest(run_key=f"cdc-{position}")


defs = Definitions(
    assets=[ticketflow_dbt_models, stripe_objects, CDC_TABLES],
    asset_checks=[cdc_relay_is_fresh, books_balance],
    jobs=[sales_marts_job, reconciliation_job],
    schedules=[
        ScheduleDefinition(
            job=job,
            cron_schedule=cron,
            execution_timezone="UTC",
            default_status=DefaultScheduleStatus.RUNNING,
        )
        for job, cron in ((sales_marts_job, "*/5 * * * *"), (reconciliation_job, "0 6 * * *"))
    ],
    sensors=[new_cdc_data],
    resources={
        # The venv's own dbt, whether or not the venv is on PATH.
        "dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE)
    },
)
