"""`python -m ticketflow.embedded.warehouse --path DIR --port N`: serve a chdb directory."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ticketflow.settings import LOCALHOST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", type=Path, required=True, help="chdb data directory")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--host", default=LOCALHOST)
    args = parser.parse_args()

    os.environ["TZ"] = "UTC"  # the engine's session time zone; all TicketFlow times are UTC
    time.tzset()
    args.path.mkdir(parents=True, exist_ok=True)

    import uvicorn

    from ticketflow.embedded.warehouse.app import create_app

    uvicorn.run(
        create_app(str(args.path.resolve())),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
