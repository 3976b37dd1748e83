"""The embedded orchestrator: `dagster dev` over TicketFlow's Dagster definitions.

`python -m ticketflow.embedded.orchestration --home DIR --port N` prepares the Dagster instance
directory (`DAGSTER_HOME`) and then *becomes* `dagster dev` (exec: same PID, same process
group), so the supervisor stops it like any other service.

Why not run `dagster dev` directly: it maps SIGTERM onto whatever SIGINT does, and a process
whose parent ignored SIGINT (as a shell does for a command started with `&`) inherits that.
Such a `dagster dev` ignores SIGTERM and SIGINT alike, and its webserver, daemon and code
server outlive every stop. Restoring the default dispositions before the exec means SIGTERM
always reaches its shutdown path: it tells the webserver and the daemon to stop through their
shutdown pipes, stops the code server and waits for them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import httpx

from pipelines.orchestration.dbt_builds import DBT_RUN_TAG_KEY
from ticketflow.settings import LOCALHOST

DEFINITIONS_MODULE = "pipelines.orchestration.definitions"
HEALTH_PATH = "/server_info"
# Written once; edit it in place to configure the instance (storage, run queue, telemetry).
INSTANCE_CONFIG = f"""\
# The embedded Dagster instance (`ticketflow up`): runs, event logs and schedules are kept in
# SQLite files beside this one (Dagster's docs: "dagster.yaml reference").
telemetry:
  enabled: false
# One dbt build at a time: two incremental builds of the same tables at once would both
# delete and insert the same keys (doubled rows). The jobs that run dbt carry this tag;
# a second one waits in the run queue.
concurrency:
  runs:
    tag_concurrency_limits:
      - key: {DBT_RUN_TAG_KEY}
        limit: 1
"""


def prepare_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)


def dev_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "--module-name",
        DEFINITIONS_MODULE,
        "--host",
        LOCALHOST,
        "--port",
        str(port),
    ]


_LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""


class LaunchError(Exception):
    """Dagster did not start the run; the message says what it answered."""


def launch_job(port: int, job: str, *, timeout: float = 60.0) -> str:
    """Ask the running webserver at `port` to run `job` now (as the UI's "Materialize all"
    does); returns the run id."""
    params = {
        "selector": {
            "repositoryLocationName": DEFINITIONS_MODULE,
            "repositoryName": "__repository__",
            "jobName": job,
        }
    }
    answer = httpx.post(
        f"http://{LOCALHOST}:{port}/graphql",
        json={"query": _LAUNCH_RUN, "variables": {"params": params}},
        timeout=timeout,
    )
    answer.raise_for_status()
    body = answer.json()
    result = (body.get("data") or {}).get("launchRun") or {}
    if result.get("__typename") != "LaunchRunSuccess":
        raise LaunchError(f"{result.get('__typename')}: {result.get('message') or body}")
    return result["run"]["runId"]


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(description="Run `dagster dev` for TicketFlow.")
    parser.add_argument("--home", type=Path, required=True, help="the DAGSTER_HOME directory")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    home = args.home.expanduser().resolve()
    prepare_home(home)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # survives the exec; an inherited SIG_IGN would too
    command = dev_argv(args.port)
    os.execve(command[0], command, {**os.environ, "DAGSTER_HOME": str(home)})


if __name__ == "__main__":
    main()
