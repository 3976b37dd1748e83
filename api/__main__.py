"""`python -m api`: bring the schema up to date, then serve the API on 127.0.0.1."""

from __future__ import annotations

import argparse

import uvicorn

from api import migrate
from api.main import create_app
from ticketflow.settings import LOCALHOST, get_settings


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--host", default=LOCALHOST)
    args = parser.parse_args()
    migrate.upgrade(settings.sqlalchemy_url)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
