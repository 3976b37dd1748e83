"""`ticketflow up | down | status` as a user runs them: real processes, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from ticketflow.ports import free_port

TICKETFLOW = str(Path(sys.executable).with_name("ticketflow"))


def _env(data_dir: Path, **ports: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CLICKHOUSE_URL", "STRIPE_API_KEY")
    }
    env["TICKETFLOW_DATA_DIR"] = str(data_dir)
    for name in (
        "postgres",
        "warehouse",
        "payments",
        "api",
        "cdc_metrics",
        "dagster",
        "dashboards",
    ):
        env[f"TICKETFLOW_{name.upper()}_PORT"] = str(ports.get(name) or free_port())
    return env


def _start_up(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, list[str]]:
    """Run `ticketflow up` and return once it says it is up (with the lines it printed)."""
    process = subprocess.Popen(
        [TICKETFLOW, "up"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    for line in process.stdout:  # `up` gives up by itself after 60 s per service
        lines.append(line.rstrip())
        if line.startswith("TicketFlow is up"):
            return process, lines
    process.wait(timeout=30)
    raise AssertionError(f"`ticketflow up` exited early: {lines}")


def _run(args: list[str], env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TICKETFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_starts_everything_and_a_signal_stops_every_process(tmp_path, stop_signal):
    env = _env(tmp_path / "var")
    process, lines = _start_up(env, tmp_path)
    descendants = psutil.Process(process.pid).children(recursive=True)
    try:
        assert lines[:8] == [
            f"postgres   postgresql://postgres@127.0.0.1:{env['TICKETFLOW_POSTGRES_PORT']}/postgres",
            f"warehouse  http://127.0.0.1:{env['TICKETFLOW_WAREHOUSE_PORT']}",
            f"payments   http://127.0.0.1:{env['TICKETFLOW_PAYMENTS_PORT']}",
            f"api        http://127.0.0.1:{env['TICKETFLOW_API_PORT']}",
            f"api docs   http://127.0.0.1:{env['TICKETFLOW_API_PORT']}/docs",
            f"cdc        http://127.0.0.1:{env['TICKETFLOW_CDC_METRICS_PORT']}/metrics",
            f"dagster    http://127.0.0.1:{env['TICKETFLOW_DAGSTER_PORT']}",
            f"dashboards http://127.0.0.1:{env['TICKETFLOW_DASHBOARDS_PORT']}",
        ]
        api = f"http://127.0.0.1:{env['TICKETFLOW_API_PORT']}"
        assert httpx.get(f"{api}/ready").json() == {"status": "ok", "database": "up"}
        assert httpx.get(f"{api}/events").json()["total"] == 0  # migrated, empty
        status = _run(["status"], env, tmp_path)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(" up ") == 7

        second = _run(["up"], env, tmp_path)
        assert second.returncode == 1
        assert "already running" in second.stderr and "ticketflow down" in second.stderr

        assert len(descendants) >= 4
    finally:
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
    rest = process.stdout.read()
    assert "postgres   stopped" in rest
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == []
    assert "database system is shut down" in (tmp_path / "var/log/postgres.log").read_text()


def test_down_stops_a_running_up(tmp_path):
    env = _env(tmp_path / "var")
    process, _ = _start_up(env, tmp_path)
    try:
        down = _run(["down"], env, tmp_path)
        assert down.returncode == 0, down.stderr
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    status = _run(["status"], env, tmp_path)
    assert status.returncode == 3
    assert "not running" in status.stdout


def test_a_taken_port_is_named_with_the_setting_that_moves_it(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = _env(tmp_path / "var", warehouse=port)
        result = _run(["up"], env, tmp_path)
    assert result.returncode == 1
    assert f"port {port}" in result.stderr
    assert "TICKETFLOW_WAREHOUSE_PORT" in result.stderr
    assert not (tmp_path / "var" / "postgres").exists()  # nothing was started
