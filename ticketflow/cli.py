"""`ticketflow`: the one command that starts, stops and inspects the platform."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from functools import partial

from ticketflow import demo, supervisor
from ticketflow.services import embedded_services
from ticketflow.settings import Settings, get_settings


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
