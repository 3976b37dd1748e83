"""Property-based requests generated from `/openapi.json` (Schemathesis) find no server error,
signed in as an attendee and as an organizer who owns a published event."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.models import Role
from tests.api.organizing import publish_event

pytestmark = pytest.mark.slow
CHECKS = "not_a_server_error,content_type_conformance,status_code_conformance"


def _run(api, token: str, report: Path) -> subprocess.CompletedProcess:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    return subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{api.url}/openapi.json",
            f"--checks={CHECKS}",
            f"--header=Authorization: Bearer {token}",
            "--max-examples=15",
            "--seed=20261125",
            # One worker: with two, Hypothesis describes strategies (ast.parse) in two threads
            # at once, which CPython 3.11.7 can fail with "SystemError: AST constructor
            # recursion depth mismatch" (seen once in a full run): a crash of the tool, not a
            # finding about the API, reported as a failed run.
            "--workers=1",
            "--phases=examples,coverage,fuzzing",
            "--exclude-path=/webhooks/stripe",  # signed payloads only: covered by its own tests
            "--suppress-health-check=all",
            "--no-color",
            f"--report-junit-path={report}",
            "--report=junit",
        ],
        capture_output=True,
        text=True,
        cwd=report.parent,  # its example cache (.schemathesis/) goes there, not in the repo
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("role", [Role.ATTENDEE, Role.ORGANIZER])
def test_generated_requests_get_no_server_error(live_api, role, tmp_path, monkeypatch):
    _, organizer = live_api.user(name="fuzz-organizer")
    publish_event(organizer, tiers={"GA": (2_000, 1_000)})
    client = organizer if role == Role.ORGANIZER else live_api.user(name="fuzz-attendee")[1]
    token = client.headers["Authorization"].split()[1]
    result = _run(live_api, token, tmp_path / "junit.xml")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or "passed" in result.stdout
