"""`dagster dev` as a supervised service: it serves TicketFlow's definitions (the dbt models as
assets) and stops with every process it started, even when it was started with SIGINT ignored,
as a shell does for a command run with `&`."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
import yaml

from pipelines.orchestration.dbt_builds import DBT_RUN_TAG_KEY
from ticketflow.embedded import orchestration
from ticketflow.services import service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import STOP_TIMEOUT_S, run_services

pytestmark = pytest.mark.slow

ASSET_KEYS = "{ assetNodes { assetKey { path } } }"
AUTOMATIONS = """{ repositoryOrError(repositorySelector: {
    repositoryLocationName: "pipelines.orchestration.definitions",
    repositoryName: "__repository__"}) {
  ... on Repository {
    schedules { name scheduleState { status } }
    sensors { name sensorState { status } } } } }"""
RUN = '{ runOrError(runId: "%s") { __typename ... on Run { jobName status tags { key value } } } }'
RUN_QUEUE = "{ instance { runQueueConfig { tagConcurrencyLimitsYaml } } }"


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Children started inside inherit SIGINT ignored, as under `cmd &` in a script."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignored_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("SigIgn:"))
    return int(line.split()[1], 16)


def _processes_of(settings: Settings) -> list[psutil.Process]:
    """Every process that names this platform's Dagster home (dagster hands it to each child)."""
    home = str(settings.data_path / "dagster")
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(process.info["cmdline"] or [])
            if home in cmdline or (process.info["environ"] or {}).get("DAGSTER_HOME") == home:
                found.append(process)
    return found


def test_dagster_serves_the_dbt_assets_and_stops_every_process(private_settings: Settings):
    settings = private_settings
    url = f"http://127.0.0.1:{settings.dagster_port}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            run_services(settings, [service_named(settings, n) for n in ("postgres", "warehouse")])
        )
        started = time.monotonic()
        with _sigint_ignored():
            running = stack.enter_context(
                run_services(settings, [service_named(settings, "dagster")])
            )
        print(f"dagster answered after {time.monotonic() - started:.1f} s")
        dagster = running.running[0].process
        assert not _ignored_signals(dagster.pid) & (1 << (signal.SIGINT - 1))

        tree = [psutil.Process(dagster.pid), *psutil.Process(dagster.pid).children(True)]
        commands = [" ".join(p.cmdline()) for p in tree]
        for part in ("dagster_webserver", "dagster._daemon", "dagster code-server"):
            assert any(part in command for command in commands), (part, commands)
        code_server = next(p for p in tree if "dagster api grpc" in " ".join(p.cmdline()))
        environment = code_server.environ()
        assert environment["DAGSTER_HOME"] == str(settings.data_path / "dagster")
        assert environment["TICKETFLOW_CLICKHOUSE_PORT"] == str(settings.warehouse_port)
        assert environment["CLICKHOUSE_URL"] == settings.effective_clickhouse_url
        assert environment["DATABASE_URL"] == settings.effective_database_url

        assert "dagster_webserver_version" in httpx.get(f"{url}/server_info").json()
        answer = httpx.post(f"{url}/graphql", json={"query": ASSET_KEYS}, timeout=60)
        answer.raise_for_status()
        keys = {"/".join(node["assetKey"]["path"]) for node in answer.json()["data"]["assetNodes"]}
        assert {
            "marts/rpt_reconciliation",
            "marts/rpt_daily_sales",
            "staging/stg_app__orders",
            "stripe/stripe_balance_transactions",  # written by the processor ingestion
            "stripe/stripe_payouts",
            "cdc_raw_tables",
        } <= keys, sorted(keys)
        assert (settings.data_path / "dagster" / "dagster.yaml").exists()

        automations = httpx.post(f"{url}/graphql", json={"query": AUTOMATIONS}, timeout=60)
        repository = automations.json()["data"]["repositoryOrError"]
        states = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
        states |= {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
        assert states == {
            "sales_marts_schedule": "RUNNING",
            "reconciliation_schedule": "RUNNING",
            "new_cdc_data": "RUNNING",
        }
        run_id = orchestration.launch_job(settings.dagster_port, "reconciliation")
        run = httpx.post(f"{url}/graphql", json={"query": RUN % run_id}, timeout=60).json()["data"][
            "runOrError"
        ]
        assert (run["__typename"], run["jobName"]) == ("Run", "reconciliation")
        # One dbt build at a time: the jobs carry the tag the instance limits to one run.
        assert {"key": DBT_RUN_TAG_KEY, "value": "reconciliation"} in run["tags"]
        queue = httpx.post(f"{url}/graphql", json={"query": RUN_QUEUE}, timeout=60).json()
        limits = queue["data"]["instance"]["runQueueConfig"]["tagConcurrencyLimitsYaml"]
        limits = yaml.safe_load(limits)
        assert limits == [{"key": DBT_RUN_TAG_KEY, "limit": 1}]
        with pytest.raises(orchestration.LaunchError, match="no_such_job"):
            orchestration.launch_job(settings.dagster_port, "no_such_job")

        stopping = time.monotonic()
        running.stop_all()  # dagster alone, while the warehouse and postgres still run
        stopped_after = time.monotonic() - stopping
    print(f"dagster stopped after {stopped_after:.1f} s")

    assert stopped_after < STOP_TIMEOUT_S  # stopped by its signal, not killed at the deadline
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []
    assert _processes_of(settings) == []
    log = (settings.data_path / "log" / "dagster.log").read_text()
    assert "Dagster services shut down." in log
