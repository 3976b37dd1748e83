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

import contextlib
import os
import subprocess

import clickhouse_connect
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    asset_check,
    define_asset_job,
    multi_asset,
    schedule,
    sensor,
)
from dagster_dbt import (
    DbtCliResource,
    DbtProject,
    build_dbt_asset_selection,
    dbt_assets,
    get_asset_key_for_model,
    get_asset_keys_by_output_name_for_source,
)

from pipelines.orchestration import checks
from pipelines.orchestration.dbt_builds import (
    DBT_DIR,
    DBT_EXECUTABLE,
    DBT_RUN_TAG_KEY,
    EVERY_ROW,
    FREQUENT_EXCLUDE,
    FREQUENT_SELECT,
    NO_UNIT_TESTS,
)
from pipelines.orchestration.warehouse_env import dbt_environment
from pipelines.stripe_ingest.ingest import ingest_from_settings
from ticketflow.settings import get_settings

SETTINGS = get_settings()
os.environ.update({k: v for k, v in dbt_environment(SETTINGS).items() if k not in os.environ})

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


# The processor ingestion writes the dbt project's `stripe` sources, so it is their asset: a
# job with both runs the ingestion first, and the models read complete tables.
STRIPE_TABLES = get_asset_keys_by_output_name_for_source([ticketflow_dbt_models], "stripe")


@multi_asset(
    name="stripe_objects",
    specs=[
        AssetSpec(key, group_name="sources", description=f"raw.{key.path[-1]}")
        for key in STRIPE_TABLES.values()
    ],
    description="Balance transactions, charges, refunds, disputes and payouts from the "
    "payment processor, incrementally by `created` (pipelines/stripe_ingest).",
)
def stripe_objects():
    for kind, result in ingest_from_settings(SETTINGS).items():
        yield MaterializeResult(
            asset_key=AssetKey(["stripe", f"stripe_{kind}"]),
            metadata={"rows_written": result.rows, "cursor": str(result.cursor)},
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
    selection=build_dbt_asset_selection(
        [ticketflow_dbt_models], dbt_select=FREQUENT_SELECT, dbt_exclude=FREQUENT_EXCLUDE
    ),
    tags={DBT_RUN_TAG_KEY: "sales_marts"},
)
reconciliation_job = define_asset_job(
    "reconciliation",
    selection=AssetSelection.assets(stripe_objects) | AssetSelection.assets(ticketflow_dbt_models),
    config={"ops": {"ticketflow_dbt_models": {"config": {"test_every_row": True}}}},
    tags={DBT_RUN_TAG_KEY: "reconciliation"},
)


def _sales_marts_blocked(instance) -> SkipReason | None:
    """Why a sales marts build should not be asked for now, if it should not: the views it
    leaves out do not exist before the first full build, and one already waiting or running
    will see the latest data anyway."""
    waiting = instance.get_runs_count(RunsFilter(job_name=sales_marts_job.name, statuses=IN_FLIGHT))
    if waiting:
        return SkipReason("a sales marts build is already queued or running")
    with contextlib.closing(warehouse()) as client:
        staging = client.command("SELECT count() FROM system.tables WHERE database = 'staging'")
    if not staging:
        return SkipReason(
            "the staging views do not exist yet: the sales marts build starts after the first "
            "full build (the reconciliation job, or `dbt build`)"
        )
    return None


IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def warehouse():
    return clickhouse_connect.get_client(dsn=SETTINGS.effective_clickhouse_url)


@schedule(
    job=sales_marts_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def sales_marts_schedule(context: ScheduleEvaluationContext):
    return _sales_marts_blocked(context.instance) or RunRequest()


# On from the start (Dagster's default is off): a platform that has just been started should
# keep its marts fresh without someone switching each automation on first.
@sensor(
    job=sales_marts_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING
)
def new_cdc_data(context: SensorEvaluationContext):
    """Build the sales marts when the relay has synced past the last build's position."""
    with contextlib.closing(warehouse()) as client:
        rows = client.query(
            f"SELECT max(confirmed_lsn) FROM {SETTINGS.cdc_database}._relay_status WHERE rows > 0"
        ).result_rows
    position = str(rows[0][0]) if rows and rows[0][0] else None
    if position is None or position == context.cursor:
        return SkipReason("no new CDC data since the last build")
    if blocked := _sales_marts_blocked(context.instance):
        return blocked  # the cursor stays: the next tick asks again
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
