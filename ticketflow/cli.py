"""`ticketflow`: the one command that starts, stops and inspects the platform."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import tempfile
from datetime import date
from functools import partial
from pathlib import Path

from ticketflow import demo, supervisor
from ticketflow.services import embedded_services
from ticketflow.settings import LOCALHOST, Settings, get_settings


def _cmd_up(args: argparse.Namespace) -> int:
    settings = get_settings()
    services = embedded_services(settings)
    if args.services:
        known = {s.name for s in services}
        unknown = sorted(set(args.services) - known)
        if unknown:
            print(
                f"error: unknown service(s) {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(known))}",
                file=sys.stderr,
            )
            return 2
        services = [s for s in services if s.name in args.services]
    once_ready = None
    if args.demo:
        if not any(s.name == "api" for s in services):
            print("error: --demo loads its traffic through the api; start it too", file=sys.stderr)
            return 2
        once_ready = partial(_load_demo, settings)
    return supervisor.up(settings, services, once_ready=once_ready)


def _load_demo(settings: Settings, running: supervisor.Supervisor) -> None:
    """Load the demo traffic; if that fails, the platform stops and says why."""
    try:
        demo.load(settings, should_stop=lambda: running.stop_requested)
    except demo.DemoCancelled:
        return
    except demo.DemoError as exc:
        raise supervisor.SupervisorError(
            f"the demo traffic could not be loaded: {exc}\n"
            "Stopping the platform. Whatever was loaded stays in the database (another "
            "`up --demo` will say it is loaded); to load it afresh, remove "
            f"{settings.data_path} first."
        ) from exc
    if any(item.service.name == "dagster" for item in running.running):
        _build_marts_now(settings)


def _build_marts_now(settings: Settings) -> None:
    """Have Dagster build every mart (and read the processor) now, not at the next schedule,
    so the dashboards show the demo at once. A refusal is reported, not fatal."""
    import httpx

    from ticketflow.embedded import orchestration

    try:
        run_id = orchestration.launch_job(settings.dagster_port, "reconciliation")
    except (orchestration.LaunchError, httpx.HTTPError, ValueError) as exc:
        print(f"Dagster did not start the first build of the marts: {exc}", file=sys.stderr)
        return
    print(
        f"Building the marts in Dagster (about a minute): "
        f"http://{LOCALHOST}:{settings.dagster_port}/runs/{run_id}",
        flush=True,
    )


def _cmd_down(_: argparse.Namespace) -> int:
    return supervisor.down(get_settings())


def _cmd_status(_: argparse.Namespace) -> int:
    settings = get_settings()
    pid = supervisor.running_supervisor_pid(settings)
    if pid is None:
        print("supervisor not running")
    else:
        print(f"supervisor running, pid {pid or 'not yet written'}")
    all_ready = True
    for service in embedded_services(settings):
        ready = service.is_ready()
        all_ready &= ready
        print(f"{service.name:<10} {'up  ' if ready else 'down'} {service.url}")
    return 0 if all_ready else 3


def _cmd_users_add(args: argparse.Namespace) -> int:
    """Create an account with any role: how the first admin comes to exist."""
    from api import migrate
    from api.db import engine_for, unit_of_work
    from api.errors import DomainError
    from api.models import Role
    from api.services.accounts import sign_up

    password = os.environ.get("TICKETFLOW_NEW_PASSWORD") or getpass.getpass("password: ")
    settings = get_settings()
    migrate.upgrade(settings.sqlalchemy_url)
    try:
        with unit_of_work(engine_for(settings.sqlalchemy_url)) as session:
            user = sign_up(
                session,
                email=args.email,
                password=password,
                full_name=args.name or args.email.split("@")[0],
                role=Role(args.role),
            )
            print(f"user {user.id} {user.email} ({user.role.value}) created")
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _cmd_cdc_sync(_: argparse.Namespace) -> int:
    from pipelines.cdc.__main__ import main as cdc_main

    return cdc_main(["sync"])


def _day(text: str) -> date:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a date in the form YYYY-MM-DD: {text!r}")


def _cmd_report_reconciliation(args: argparse.Namespace) -> int:
    from dashboards.exports import reconciliation as report

    fail = args.parser.error  # prints the usage line and exits 2
    if args.first_day > args.last_day:
        fail(f"--from {args.first_day} is after --to {args.last_day}")
    suffix = args.output.suffix.lower().lstrip(".") if args.output else ""
    fmt = args.format or (suffix if suffix in report.FORMATS else "csv")
    if args.output and suffix in report.FORMATS and suffix != fmt:
        fail(f"--output {args.output} names a .{suffix} file but --format is {fmt}")
    if args.summary is not None and fmt != "csv":
        fail("--summary is for csv; the xlsx report has its own Summary sheet")
    period = report.Period(args.first_day, args.last_day)
    output = args.output or Path(report.default_filename(period, fmt))
    targets = [output]
    if args.summary is not None:
        summary = args.summary if isinstance(args.summary, Path) else None
        targets.append(summary or output.with_name(f"{output.stem}_summary.csv"))
        if targets[1].resolve() == output.resolve():
            fail("--summary needs a file of its own, not the report's")
    for target in targets:
        if target.is_dir():
            fail(f"cannot write {target}: it is a folder")
        if not target.parent.is_dir():
            fail(f"cannot write {target}: the folder {target.parent} does not exist")

    try:
        client = report.connect(get_settings().effective_clickhouse_url)
        made = report.export(client, period, fmt, csv_summary=args.summary is not None)
    except report.ReportError as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return 1
    files = [made.report] + ([made.summary] if made.summary is not None else [])
    _write_all(dict(zip(targets, files, strict=True)))
    print(f"reconciliation {period}: {made.items} item(s) -> {', '.join(map(str, targets))}")
    return 0


def _write_all(files: dict[Path, bytes]) -> None:
    """Each file appears whole or not at all: written aside, then renamed into place."""
    drafts = {}
    try:
        for path, data in files.items():
            fd, draft = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            drafts[path] = draft
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        for path, draft in drafts.items():
            os.replace(draft, path)
    finally:
        for draft in drafts.values():
            if os.path.exists(draft):
                os.unlink(draft)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticketflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the platform in the foreground (Ctrl-C stops it)")
    up.add_argument("services", nargs="*", help="start only these services (default: all)")
    up.add_argument(
        "--demo",
        action="store_true",
        help="once all is up, load demo traffic through the API (once per data directory)",
    )
    up.set_defaults(func=_cmd_up)

    down = commands.add_parser("down", help="stop a running `ticketflow up`")
    down.set_defaults(func=_cmd_down)

    status = commands.add_parser("status", help="show each service and whether it answers")
    status.set_defaults(func=_cmd_status)

    cdc = commands.add_parser("cdc", help="the PostgreSQL -> ClickHouse change stream")
    cdc_commands = cdc.add_subparsers(dest="cdc_command", required=True)
    cdc_sync = cdc_commands.add_parser(
        "sync", help="copy every change committed so far into ClickHouse, then exit"
    )
    cdc_sync.set_defaults(func=_cmd_cdc_sync)

    users = commands.add_parser("users", help="manage accounts from the command line")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    add = user_commands.add_parser(
        "add",
        help="create an account with a role (password from TICKETFLOW_NEW_PASSWORD or a prompt)",
    )
    add.add_argument("email")
    add.add_argument("--role", choices=["attendee", "organizer", "finance", "admin"], required=True)
    add.add_argument("--name", help="full name (default: the e-mail's local part)")
    add.set_defaults(func=_cmd_users_add)

    report = commands.add_parser("report", help="reports from the warehouse's marts, as files")
    report_commands = report.add_subparsers(dest="report_command", required=True)
    reconciliation = report_commands.add_parser(
        "reconciliation",
        help="payments and refunds against the processor's transactions and payouts",
        description="Write the reconciliation report (marts.rpt_reconciliation) for finance: one "
        "row per item dated in the period (UTC, both days included), amounts in major units.",
    )
    reconciliation.add_argument(
        "--from",
        dest="first_day",
        type=_day,
        required=True,
        metavar="YYYY-MM-DD",
        help="the first day (UTC), included",
    )
    reconciliation.add_argument(
        "--to",
        dest="last_day",
        type=_day,
        required=True,
        metavar="YYYY-MM-DD",
        help="the last day (UTC), included",
    )
    reconciliation.add_argument(
        "--format",
        choices=["csv", "xlsx"],
        help="default: from --output's suffix, else csv",
    )
    reconciliation.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="default: reconciliation_FROM_TO.FORMAT in the current folder",
    )
    reconciliation.add_argument(
        "--summary",
        nargs="?",
        const=True,
        type=Path,
        metavar="PATH",
        help="csv only: also write the summary (per status and currency) to PATH "
        "(default: the report's name with _summary)",
    )
    reconciliation.set_defaults(func=_cmd_report_reconciliation, parser=reconciliation)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except supervisor.SupervisorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
