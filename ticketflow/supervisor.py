"""Starts the embedded services in order, watches them, and stops every one of them cleanly.

One supervisor per data directory: it holds an exclusive `flock` on `<data>/run/supervisor.lock`
(with its PID inside) for as long as it runs, so a second `up` is refused and `down` knows whom
to signal. Each service runs in its own session (process group), so a Ctrl-C in the terminal
reaches only the supervisor, which then stops the services in reverse order with each one's own
stop signal, and kills whatever is left of a group that does not exit in time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ticketflow.os_users import as_user
from ticketflow.ports import port_is_free
from ticketflow.services import Service, log_path
from ticketflow.settings import LOCALHOST, Settings

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class SupervisorError(Exception):
    """A start-up problem the user can fix; its message says how."""


def lock_path(settings: Settings) -> Path:
    return settings.data_path / "run" / "supervisor.lock"


UNKNOWN_PID = 0  # a supervisor holds the lock but has not written its PID yet


def running_supervisor_pid(settings: Settings) -> int | None:
    """The PID of the supervisor holding this data directory, UNKNOWN_PID, or None."""
    path = lock_path(settings)
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            # A shared lock: probing never blocks an `up` that is taking the exclusive one.
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() and int(text) > 0 else UNKNOWN_PID
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def supervisor_lock(settings: Settings) -> Iterator[None]:
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise SupervisorError(
                f"TicketFlow is already running from {settings.data_path} (supervisor pid {pid}); "
                "stop it with `ticketflow down` first."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


def check_ports(services: list[Service]) -> None:
    taken = [s for s in services if not port_is_free(s.port)]
    if taken:
        lines = [
            f"port {s.port} on {LOCALHOST} is already in use, so {s.name} cannot start; "
            f"free it or set {s.port_setting} to another port."
            for s in taken
        ]
        raise SupervisorError("\n".join(lines))


@dataclass
class Running:
    service: Service
    process: subprocess.Popen
    log: TextIO


class Supervisor:
    def __init__(self, settings: Settings, services: list[Service], out: TextIO = sys.stdout):
        self.settings = settings
        self.services = services
        self.out = out
        self.running: list[Running] = []
        self.stop_requested = False

    # --- start ---------------------------------------------------------------------------
    def start_all(self) -> None:
        check_ports(self.services)
        for service in self.services:
            if self.stop_requested:
                return
            self._start(service)

    def _start(self, service: Service) -> None:
        try:
            service.prepare()
        except Exception as exc:
            raise SupervisorError(f"{service.name} could not be prepared: {exc}") from exc
        if self.stop_requested:
            return
        path = log_path(self.settings, service)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.open("ab")
        env = {**os.environ, "TZ": "UTC", **service.env}
        process = subprocess.Popen(
            service.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            **as_user(service.run_as),
        )
        self.running.append(Running(service, process, log))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not service.is_ready():
            if self.stop_requested:
                return
            if process.poll() is not None:
                raise SupervisorError(
                    f"{service.name} exited with code {process.returncode} while starting; "
                    f"its log ({path}) ends with:\n{_tail(path)}"
                )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"{service.name} was not ready after {READY_TIMEOUT_S:.0f} s; "
                    f"its log ({path}) ends with:\n{_tail(path)}"
                )
            time.sleep(0.1)
        self._print_url(service)

    def _print_url(self, service: Service) -> None:
        print(f"{service.name:<10} {service.url}", file=self.out, flush=True)
        if service.docs_url:
            print(f"{service.name + ' docs':<10} {service.docs_url}", file=self.out, flush=True)

    def print_urls(self) -> None:
        for item in self.running:
            self._print_url(item.service)

    # --- run -----------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self.stop_requested = True

    def wait(self) -> int:
        """Block until asked to stop or until a service dies; return the exit code for `up`."""
        while not self.stop_requested:
            for item in self.running:
                if item.process.poll() is not None:
                    print(
                        f"{item.service.name} exited unexpectedly with code "
                        f"{item.process.returncode}; stopping the others "
                        f"(see {log_path(self.settings, item.service)}).",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
            time.sleep(0.2)
        return 0

    # --- stop ----------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop every service, even if reporting it fails (say, stdout went away)."""
        stopping = list(reversed(self.running))
        for item in stopping:
            _stop(item)
        self.running.clear()
        with contextlib.suppress(OSError, ValueError):
            for item in stopping:
                print(f"{item.service.name:<10} stopped", file=self.out, flush=True)


def _stop(item: Running) -> None:
    process = item.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, item.service.stop_signal)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"{item.service.name} did not stop in time; killing it", file=sys.stderr)
    # Anything left in the service's process group (workers, helpers) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    item.log.close()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def run_services(settings: Settings, services: list[Service]) -> Iterator[Supervisor]:
    """Start `services`, yield, stop them: for tests and benchmarks that need real servers."""
    supervisor = Supervisor(settings, services, out=open(os.devnull, "w"))  # noqa: SIM115
    try:
        supervisor.start_all()
        yield supervisor
    finally:
        supervisor.stop_all()
        supervisor.out.close()


def up(
    settings: Settings,
    services: list[Service],
    out: TextIO = sys.stdout,
    *,
    once_ready: Callable[[Supervisor], None] | None = None,
) -> int:
    """Run the platform in the foreground until SIGTERM/SIGINT; returns the exit code.

    `once_ready` runs when every service answers (say, loading demo data); if it raises
    SupervisorError, everything stops and `up` fails with its message.
    """
    with supervisor_lock(settings):
        supervisor = Supervisor(settings, services, out)
        previous = {
            sig: signal.signal(sig, supervisor.request_stop)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        code = 0
        try:
            supervisor.start_all()
            if once_ready and supervisor.running and not supervisor.stop_requested:
                once_ready(supervisor)
                if not supervisor.stop_requested:
                    supervisor.print_urls()  # again: what `once_ready` printed pushed them up
            if supervisor.running and not supervisor.stop_requested:
                print("TicketFlow is up. Press Ctrl-C to stop.", file=out, flush=True)
                code = supervisor.wait()
        except SupervisorError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            supervisor.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code


def down(settings: Settings, timeout: float = STOP_TIMEOUT_S * 4) -> int:
    pid = running_supervisor_pid(settings)
    if pid is None:
        print(f"TicketFlow is not running from {settings.data_path}.")
        return 0
    if pid == UNKNOWN_PID:
        print("TicketFlow is starting; run `ticketflow down` again in a moment.", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_supervisor_pid(settings) is not None:
        if time.monotonic() > deadline:
            print(
                f"the supervisor (pid {pid}) did not stop within {timeout:.0f} s", file=sys.stderr
            )
            return 1
        time.sleep(0.2)
    print("TicketFlow stopped.")
    return 0
