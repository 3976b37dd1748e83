"""What `ticketflow up` runs: one `Service` per embedded part, in start order.

A service is a command line, the port it binds, how to tell it is ready and how to stop it.
Parts that the settings point elsewhere (`DATABASE_URL`, `CLICKHOUSE_URL`, `STRIPE_API_KEY`)
are not started: the platform uses those servers instead.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.orchestration.warehouse_env import dbt_environment
from ticketflow.embedded.orchestration import HEALTH_PATH as DAGSTER_HEALTH_PATH
from ticketflow.embedded.payments import HEALTH_PATH as PAYMENTS_HEALTH_PATH
from ticketflow.embedded.postgres import STOP_SIGNAL as POSTGRES_STOP_SIGNAL
from ticketflow.embedded.postgres import EmbeddedPostgres
from ticketflow.ports import free_port
from ticketflow.settings import LOCALHOST, Settings


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    port: int
    port_setting: str  # the environment variable that moves it to another port
    url: str
    is_ready: Callable[[], bool]
    prepare: Callable[[], object] = lambda: None  # one-off set-up before the first start
    run_as: str | None = None  # OS user, when it may not run as root
    stop_signal: int = signal.SIGTERM
    env: dict[str, str] = field(default_factory=dict)
    docs_url: str | None = None  # a page for people to start from


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _postgres(settings: Settings) -> Service:
    server = EmbeddedPostgres(settings.data_path / "postgres", settings.postgres_port)
    return Service(
        name="postgres",
        argv=server.server_argv(),
        port=settings.postgres_port,
        port_setting="TICKETFLOW_POSTGRES_PORT",
        url=server.url,
        is_ready=server.is_ready,
        prepare=server.initialize,
        run_as=server.user,
        stop_signal=POSTGRES_STOP_SIGNAL,
    )


def _warehouse(settings: Settings) -> Service:
    url = f"http://{LOCALHOST}:{settings.warehouse_port}"
    return Service(
        name="warehouse",
        argv=[
            sys.executable,
            "-m",
            "ticketflow.embedded.warehouse",
            "--path",
            str(settings.data_path / "clickhouse"),
            "--port",
            str(settings.warehouse_port),
        ],
        port=settings.warehouse_port,
        port_setting="TICKETFLOW_WAREHOUSE_PORT",
        url=url,
        is_ready=lambda: http_ok(f"{url}/ping"),
    )


def _payments(settings: Settings) -> Service:
    url = f"http://{LOCALHOST}:{settings.payments_port}"
    return Service(
        name="payments",
        argv=[
            sys.executable,
            "-m",
            "ticketflow.embedded.payments",
            "--path",
            str(settings.data_path / "payments"),
            "--port",
            str(settings.payments_port),
            "--fee-percent",
            str(settings.payments_fee_percent),
            "--fee-fixed",
            str(settings.payments_fee_fixed),
        ],
        port=settings.payments_port,
        port_setting="TICKETFLOW_PAYMENTS_PORT",
        url=url,
        is_ready=lambda: http_ok(f"{url}{PAYMENTS_HEALTH_PATH}"),
    )


def _api(settings: Settings) -> Service:
    url = f"http://{LOCALHOST}:{settings.api_port}"
    return Service(
        name="api",
        argv=[sys.executable, "-m", "api", "--port", str(settings.api_port)],
        port=settings.api_port,
        port_setting="TICKETFLOW_API_PORT",
        url=url,
        is_ready=lambda: http_ok(f"{url}/ready"),
        docs_url=f"{url}/docs",
        # The child reads its settings from the environment: hand it this platform's.
        env={
            "DATABASE_URL": settings.effective_database_url,
            "TICKETFLOW_DATA_DIR": str(settings.data_path),
            "TICKETFLOW_PAYMENTS_PORT": str(settings.payments_port),
            "TICKETFLOW_WAREHOUSE_PORT": str(settings.warehouse_port),
        },
    )


def _cdc(settings: Settings) -> Service:
    url = f"http://{LOCALHOST}:{settings.cdc_metrics_port}"
    return Service(
        name="cdc",
        argv=[sys.executable, "-m", "pipelines.cdc", "run"],
        port=settings.cdc_metrics_port,
        port_setting="TICKETFLOW_CDC_METRICS_PORT",
        url=f"{url}/metrics",
        is_ready=lambda: http_ok(f"{url}/metrics"),
        env={
            "DATABASE_URL": settings.effective_database_url,
            "CLICKHOUSE_URL": settings.effective_clickhouse_url,
            "TICKETFLOW_DATA_DIR": str(settings.data_path),
            "TICKETFLOW_CDC_METRICS_PORT": str(settings.cdc_metrics_port),
        },
    )


def _dagster(settings: Settings) -> Service:
    url = f"http://{LOCALHOST}:{settings.dagster_port}"
    return Service(
        name="dagster",
        argv=[
            sys.executable,
            "-m",
            "ticketflow.embedded.orchestration",
            "--home",
            str(settings.data_path / "dagster"),
            "--port",
            str(settings.dagster_port),
        ],
        port=settings.dagster_port,
        port_setting="TICKETFLOW_DAGSTER_PORT",
        url=url,
        is_ready=lambda: http_ok(f"{url}{DAGSTER_HEALTH_PATH}"),
        # The definitions read this platform's settings; dbt reads the warehouse from
        # TICKETFLOW_CLICKHOUSE_* (these override any inherited from the caller's shell).
        env={
            "DATABASE_URL": settings.effective_database_url,
            "CLICKHOUSE_URL": settings.effective_clickhouse_url,
            "TICKETFLOW_DATA_DIR": str(settings.data_path),
            "TICKETFLOW_PAYMENTS_PORT": str(settings.payments_port),
            **dbt_environment(settings),
        },
    )


def _dashboards(settings: Settings) -> Service:
    url = f"http://{LOCALHOST}:{settings.dashboards_port}"
    # The entry script's path, found without running it (importing it would draw the app).
    app = importlib.util.find_spec("dashboards.app").origin
    return Service(
        name="dashboards",
        argv=[
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(app),
            "--server.address",
            LOCALHOST,
            "--server.port",
            str(settings.dashboards_port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--client.toolbarMode",
            "minimal",
            "--browser.gatherUsageStats",
            "false",
        ],
        port=settings.dashboards_port,
        port_setting="TICKETFLOW_DASHBOARDS_PORT",
        url=url,
        is_ready=lambda: http_ok(f"{url}/_stcore/health"),
        # Read-only on the warehouse's marts; signs people in through the API.
        env={
            "CLICKHOUSE_URL": settings.effective_clickhouse_url,
            "TICKETFLOW_DATA_DIR": str(settings.data_path),
            "TICKETFLOW_API_PORT": str(settings.api_port),
        },
    )


def embedded_services(settings: Settings) -> list[Service]:
    """The services to start, in dependency order (stopped in reverse).

    Embedded infrastructure only where the settings point nowhere else; the platform's own
    processes (the API, the CDC relay, Dagster, the dashboards) always.
    """
    services = []
    if settings.embedded_postgres:
        services.append(_postgres(settings))
    if settings.embedded_warehouse:
        services.append(_warehouse(settings))
    if settings.embedded_payments:
        services.append(_payments(settings))
    services.append(_api(settings))
    services.append(_cdc(settings))
    services.append(_dagster(settings))
    services.append(_dashboards(settings))
    return services


def service_named(settings: Settings, name: str) -> Service:
    for service in embedded_services(settings):
        if service.name == name:
            return service
    raise KeyError(f"no embedded service named {name!r} with these settings")


def isolated_settings(data_dir: Path) -> Settings:
    """A private embedded platform: its own data directory and free ports, no `.env`."""
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=None,
        clickhouse_url=None,
        stripe_api_key=None,
        postgres_port=free_port(),
        warehouse_port=free_port(),
        payments_port=free_port(),
        api_port=free_port(),
        cdc_metrics_port=free_port(),
        dagster_port=free_port(),
        dashboards_port=free_port(),
    )


def log_path(settings: Settings, service: Service) -> Path:
    return settings.data_path / "log" / f"{service.name}.log"
