"""Operations telemetry over HTTP: metrics by route template, JSON logs under request ids."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api import deps
from api.main import create_app
from api.telemetry import metrics
from api.telemetry.logs import json_handler
from tests.api.factories import NOW
from ticketflow.ports import free_port
from ticketflow.settings import LOCALHOST

REPO = Path(__file__).resolve().parents[2]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def app(engine):
    app = create_app()
    app.dependency_overrides[deps.engine] = lambda: engine
    app.dependency_overrides[deps.current_time] = lambda: NOW

    @app.get("/_test/log")
    def log_inside() -> dict:
        logging.getLogger("tests.inside").warning("inside the route", extra={"order_id": 7})
        return {}

    @app.get("/_test/crash")
    def crash() -> dict:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def log_lines():
    """Everything logged during the test, as the JSON objects the stderr handler writes."""
    stream = io.StringIO()
    root = logging.getLogger()
    handler, level = json_handler(stream), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def scrape(client) -> dict[tuple[str, tuple], float]:
    """`{(sample name, sorted labels): value}` from `/metrics`."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def routes_seen(samples) -> set[str]:
    return {dict(labels).get("route") for (name, labels) in samples if name.startswith("http_")}


def test_requests_are_counted_by_route_template_never_by_raw_path(client):
    before = scrape(client)
    assert client.get("/events/999999").status_code == 404
    assert client.get("/events/888888").status_code == 404
    client.get("/health")
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    event = {"method": "GET", "route": "/events/{event_id}"}
    assert delta("http_requests_total", **event, status="404") == 2
    assert delta("http_requests_total", method="GET", route="/health", status="200") == 1
    assert delta("http_request_duration_seconds_count", **event) == 2
    assert delta("http_request_duration_seconds_bucket", **event, le="+Inf") == 2
    buckets = {dict(labels)["le"] for (name, labels) in after if name.endswith("_bucket")}
    assert {"0.005", "0.1", "1.0", "10.0", "+Inf"} <= buckets
    assert not {route for route in routes_seen(after) if "999999" in route}


def test_unknown_paths_share_one_bounded_label(client):
    before = scrape(client)
    for path in ("/wp-admin/setup.php", "/nope/12345", "/.env"):
        assert client.get(path).status_code == 404
    after = scrape(client)
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    assert (
        value(after, "http_requests_total", **labels)
        - value(before, "http_requests_total", **labels)
        == 3
    )
    assert not {r for r in routes_seen(after) if "wp-admin" in r or "nope" in r or ".env" in r}


def test_a_crash_counts_as_500_and_logs_its_traceback_under_the_request_id(client, log_lines):
    before = scrape(client)
    assert client.get("/_test/crash").status_code == 500
    labels = {"method": "GET", "route": "/_test/crash", "status": "500"}
    assert value(scrape(client), "http_requests_total", **labels) == (
        value(before, "http_requests_total", **labels) + 1
    )
    (access,) = [line for line in log_lines() if line.get("path") == "/_test/crash"]
    assert access["level"] == "ERROR" and access["status"] == 500
    assert "RuntimeError: boom" in access["exc_info"]
    assert GENERATED_ID.fullmatch(access["request_id"])


def test_metrics_is_prometheus_text_and_not_in_the_api_schema(client):
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE http_requests_total counter" in response.text
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
    labels = {"method": "GET", "route": "/openapi.json", "status": "200"}
    assert value(scrape(client), "http_requests_total", **labels) >= 1


def test_business_counters_show_in_metrics(client):
    before = scrape(client)
    metrics.record_order_placed()
    metrics.record_payment("succeeded")
    metrics.record_payment("failed")
    metrics.record_payment("failed")
    metrics.record_refund()
    metrics.record_check_in("admitted")
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("orders_placed_total") == 1
    assert delta("payments_total", status="succeeded") == 1
    assert delta("payments_total", status="failed") == 2
    assert delta("refunds_total") == 1
    assert delta("check_ins_total", result="admitted") == 1


def test_each_request_logs_one_json_access_line_under_its_request_id(client, log_lines):
    response = client.get("/events/999999")
    request_id = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(request_id)
    (access,) = [
        line
        for line in log_lines()
        if line["logger"] == "api.access" and line["request_id"] == request_id
    ]
    assert access["level"] == "INFO"
    assert access["message"] == "GET /events/999999 404"
    assert (access["method"], access["path"], access["route"], access["status"]) == (
        "GET",
        "/events/999999",
        "/events/{event_id}",
        404,
    )
    assert access["client"] == "testclient" and access["duration_ms"] >= 0
    assert datetime.fromisoformat(access["time"]).utcoffset() == timedelta(0)


def test_records_logged_inside_a_route_carry_the_request_id(client, log_lines):
    response = client.get("/_test/log")
    (inside,) = [line for line in log_lines() if line["logger"] == "tests.inside"]
    assert inside["request_id"] == response.headers["X-Request-ID"]
    assert inside["message"] == "inside the route" and inside["order_id"] == 7
    assert inside["level"] == "WARNING"


def test_an_incoming_request_id_is_kept(client, log_lines):
    response = client.get("/health", headers={"X-Request-ID": "lb-42.abc_DEF"})
    assert response.headers["X-Request-ID"] == "lb-42.abc_DEF"
    assert [line["request_id"] for line in log_lines() if line["logger"] == "api.access"] == [
        "lb-42.abc_DEF"
    ]


@pytest.mark.parametrize(
    "unsafe", ["../../etc/passwd", "a b", "<script>alert(1)</script>", "x" * 101, "id;drop"]
)
def test_an_unsafe_request_id_is_replaced(client, log_lines, unsafe):
    response = client.get("/health", headers={"X-Request-ID": unsafe})
    replaced = response.headers["X-Request-ID"]
    assert replaced != unsafe and GENERATED_ID.fullmatch(replaced)
    assert all(unsafe not in json.dumps(line) for line in log_lines())


def test_configure_logging_twice_still_writes_each_record_once():
    code = (
        "import logging\n"
        "from api.telemetry.logs import configure_logging\n"
        "configure_logging('INFO'); configure_logging('INFO')\n"
        "logging.getLogger('x').info('hello %s', 'there', extra={'order_id': 3})\n"
        "logging.getLogger('x').debug('not at INFO')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    (line,) = result.stderr.splitlines()
    record = json.loads(line)
    assert list(record)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert (record["message"], record["order_id"], record["request_id"]) == ("hello there", 3, None)


@pytest.mark.slow
def test_two_workers_share_one_set_of_metrics(create_database, tmp_path):
    """`python -m api` with 2 workers: any worker's /metrics counts every worker's requests."""
    url = create_database("ticketflow_workers").replace("postgresql+psycopg://", "postgresql://")
    stale = tmp_path / "data" / "run" / "prometheus" / "stale.db"
    stale.parent.mkdir(parents=True)
    stale.write_text("left by an earlier run")
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TICKETFLOW_", "PROMETHEUS_")) and key != "DATABASE_URL"
    }
    env |= {
        "DATABASE_URL": url,
        "TICKETFLOW_DATA_DIR": str(tmp_path / "data"),
        "TICKETFLOW_API_WORKERS": "2",
        "TICKETFLOW_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
    }
    log = tmp_path / "api.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "api", "--port", str(port)],
            cwd=tmp_path,  # no developer's .env
            env=env,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    base = f"http://{LOCALHOST}:{port}"
    try:
        _wait_ready(server, base, log)
        assert not stale.exists()
        request_ids, pids = set(), set()
        # New connections are spread over the workers by the kernel: go on until both served.
        while len(pids) < 2 and len(request_ids) < 400:
            for _ in range(20):
                request_ids.add(httpx.get(f"{base}/health").headers["X-Request-ID"])
            pids = {
                line["pid"]
                for line in map(json.loads, log.read_text().splitlines())
                if line.get("route") == "/health"
            }
        assert len(pids) == 2, "one worker answered every request"
        with httpx.Client(base_url=base) as http:
            samples = scrape(http)
        assert value(
            samples, "http_requests_total", method="GET", route="/health", status="200"
        ) == len(request_ids)
        assert value(samples, "payments_total", status="failed") == 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    access_ids = {line["request_id"] for line in lines if line["logger"] == "api.access"}
    assert request_ids <= access_ids
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]


def _wait_ready(server: subprocess.Popen, base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the API exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the API was not ready in {timeout}s:\n{log.read_text()}")
