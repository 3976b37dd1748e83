"""`python -m ticketflow.embedded.payments --path DIR --port N`: serve localstripe.

Runs localstripe's aiohttp app ourselves instead of its `start()`, which parses sys.argv,
binds every interface and loads its store from a fixed file in /tmp.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from decimal import Decimal
from pathlib import Path

from ticketflow.embedded.payments import PAYOUTS_RUN_PATH
from ticketflow.settings import LOCALHOST


async def serve(app, host: str, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()  # closes the site and writes the final snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", type=Path, required=True, help="directory for the snapshot")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--fee-percent", type=Decimal, default=Decimal("2.9"))
    parser.add_argument("--fee-fixed", type=int, default=30, help="minor units per charge")
    parser.add_argument(
        "--available-after",
        type=int,
        default=0,
        metavar="SECONDS",
        help="how long a charge's funds stay pending (0: available at once; Stripe: 2 days)",
    )
    parser.add_argument(
        "--payout-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"run automatic payouts this often (default: only on POST {PAYOUTS_RUN_PATH})",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from ticketflow.embedded.payments import fake_stripe

    args.path.mkdir(parents=True, exist_ok=True)
    app = fake_stripe.install(
        args.path / "localstripe.pickle",
        fee_percent=args.fee_percent,
        fee_fixed=args.fee_fixed,
        available_after_s=args.available_after,
        payout_interval_s=args.payout_interval,
    )
    asyncio.run(serve(app, args.host, args.port))


if __name__ == "__main__":
    main()
