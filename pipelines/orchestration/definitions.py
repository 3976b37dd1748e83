"""TicketFlow's Dagster definitions: `dagster dev -m pipelines.orchestration.definitions`.

- every dbt model is an asset, and every dbt test an asset check (dagster-dbt);
- the processor's objects (`raw.stripe_*`) are one Python asset the marts depend on;
- the CDC relay's raw tables are an external asset with a freshness check;
- "books balance" checks the sales marts against PostgreSQL per event;
- the sales marts build every few minutes and when new CDC data has arrived (the tables and
  incremental models, each test on the rows its table's latest build wrote); the
  reconciliation daily (the processor's objects, then every model, every row tested). The
  dbt arguments of both are in `pipelines/orchestration/dbt_builds.py`.
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
    Config,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    schedule,
    sensor,
)
from dagster_dbt import (
    DbtCliResource,
    DbtProject,
    build_dbt_asset_selection,
    dbt_assets,
    get_asset_key_for_model,
)

from pipelines.orchestration import checks
from pipelines.orchestration.dbt_builds import EVERY_ROW, FREQUENT_EXCLUDE, NO_UNIT_TESTS
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


class DbtBuildConfig(Config):
    test_every_row: bool = False  # else each test reads its table's latest build only


@dbt_assets(manifest=DBT_PROJECT.manifest_path)
def ticketflow_dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig
):
    arguments = ["build", *NO_UNIT_TESTS, *(EVERY_ROW if config.test_every_row else ())]
    yield from dbt.cli(arguments, context=context).stream()


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


sales_marts_job = define_asset_job(
    "sales_marts",
    selection=build_dbt_asset_selection([ticketflow_dbt_models], dbt_exclude=FREQUENT_EXCLUDE),
)
reconciliation_job = define_asset_job(
    "reconciliation",
    selection=AssetSelection.assets(stripe_objects) | AssetSelection.assets(ticketflow_dbt_models),
    config={"ops": {"ticketflow_dbt_models": {"config": {"test_every_row": True}}}},
)


WAITING_FOR_THE_FULL_BUILD = (
    "the staging views do not exist yet: the sales marts build starts after the first full "
    "build (the reconciliation job, or `dbt build`)"
)


def _views_built(client) -> bool:
    """The frequent build leaves the views out: they must exist before it can run."""
    return bool(client.command("SELECT count() FROM system.tables WHERE database = 'staging'"))


@schedule(
    job=sales_marts_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def sales_marts_schedule(context: ScheduleEvaluationContext):
    if not _views_built(clickhouse_connect.get_client(dsn=SETTINGS.effective_clickhouse_url)):
        return SkipReason(WAITING_FOR_THE_FULL_BUILD)
    return RunRequest()


# On from the start (Dagster's default is off): a platform that has just been started should
# keep its marts fresh without someone switching each automation on first.
@sensor(
    job=sales_marts_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING
)
def new_cdc_data(context: SensorEvaluationContext):
    """Build the sales marts when the relay has synced past the last build's position."""
    client = clickhouse_connect.get_client(dsn=SETTINGS.effective_clickhouse_url)
    if not _views_built(client):
        return SkipReason(WAITING_FOR_THE_FULL_BUILD)
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
        sales_marts_schedule,
        ScheduleDefinition(
            job=reconciliation_job,
            cron_schedule="0 6 * * *",
            execution_timezone="UTC",
            default_status=DefaultScheduleStatus.RUNNING,
        ),
    ],
    sensors=[new_cdc_data],
    resources={
        # The venv's own dbt, whether or not the venv is on PATH.
        "dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE)
    },
)
