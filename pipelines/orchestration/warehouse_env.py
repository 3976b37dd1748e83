"""One environment switch for dbt and Dagster: the warehouse named by the settings.

dbt's profile reads TICKETFLOW_CLICKHOUSE_* variables; they are derived here from
`CLICKHOUSE_URL` (or the embedded warehouse's port), so the same settings drive the relay,
the ingestion and the dbt models.

`eval "$(python -m pipelines.orchestration.warehouse_env)"` exports them into a shell, for
running dbt by hand against the warehouse the settings name.
"""

from __future__ import annotations

import shlex
from urllib.parse import unquote, urlsplit

from ticketflow.settings import Settings


def dbt_environment(settings: Settings) -> dict[str, str]:
    url = urlsplit(settings.effective_clickhouse_url)
    secure = url.scheme == "https"
    return {
        "TICKETFLOW_CLICKHOUSE_HOST": url.hostname or "127.0.0.1",
        "TICKETFLOW_CLICKHOUSE_PORT": str(url.port or (8443 if secure else 8123)),
        "TICKETFLOW_CLICKHOUSE_USER": unquote(url.username or "default"),
        "TICKETFLOW_CLICKHOUSE_PASSWORD": unquote(url.password or ""),
        "TICKETFLOW_CLICKHOUSE_SECURE": "true" if secure else "false",
        "TICKETFLOW_CDC_DATABASE": settings.cdc_database,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


if __name__ == "__main__":
    from ticketflow.settings import get_settings

    for name, value in dbt_environment(get_settings()).items():
        print(f"export {name}={shlex.quote(value)}")
