"""`python -m ibsim`: the simulated IB Gateway (TWS API on --port, control API on
--control-port), loopback by default."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from loguru import logger

from ibsim.app import Simulator
from ibsim.control import SEC_TYPES
from ibsim.fills import MODELS
from ibsim.logs import setup_logging
from ibsim.quotes import MD_MODES
from ibsim.server import TICK_MODES


def parse_market_data(text: str) -> dict[str, str]:
    """--market-data "OPT=none,STK=delayed" -> {"OPT": "none", "STK": "delayed"}."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        sec_type, sep, mode = item.partition("=")
        if not sep or sec_type.upper() not in SEC_TYPES or mode not in MD_MODES:
            raise ValueError(f"--market-data: {item!r} is not SECTYPE=MODE (secType one of"
                             f" {', '.join(SEC_TYPES)}; mode one of {', '.join(MD_MODES)})")
        out[sec_type.upper()] = mode
    return out


def make_simulator(args: argparse.Namespace, market_data: dict[str, str]) -> Simulator:
    return Simulator(
        host=args.host, port=args.port, control_port=args.control_port, account=args.account,
        seed=args.seed, spot=args.spot, state_file=args.state_file,
        tick_interval=args.tick_interval, now=args.now or None,
        master_client_id=args.master_client_id, cash=args.cash,
        ib_schedule=args.ib_schedule, fill_model=args.fill_model,
        buyer_rate=args.buyer_rate, spread=args.spread, read_only=args.read_only,
        market_data=market_data, max_rate=args.max_rate,
        tif_preset=args.tif_preset, tick_mode=args.tick_mode,
        accounts=[a.strip() for a in args.accounts.split(",")] if args.accounts else None,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ibsim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4002)
    p.add_argument("--control-port", type=int, default=4010)
    p.add_argument("--account", default="DU1234567")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--spot", type=float, default=600.0)
    p.add_argument("--state-file", default=None)
    p.add_argument("--tick-interval", type=float, default=0.25)
    p.add_argument("--now", default=None, help="simulated date/time (ISO with offset)")
    p.add_argument("--log-dir", default=None)
    p.add_argument("--master-client-id", type=int, default=None,
                   help="TWS's Master API client ID: hears every client's orders and fills")
    p.add_argument("--cash", type=float, default=float(os.environ.get("IBSIM_CASH", 100_000)),
                   help="the account's starting cash (env IBSIM_CASH)")
    p.add_argument("--ib-schedule", action="store_true",
                   default=os.environ.get("IBSIM_IB_SCHEDULE", "") in ("1", "true", "yes"),
                   help="IB's daily reset and Sunday re-authentication on ibsim's clock"
                        " (env IBSIM_IB_SCHEDULE=1)")
    p.add_argument("--fill-model", choices=MODELS, default="kind",
                   help="kind: a seeded fair price each tick fills limits inside the spread;"
                        " buyers: only an arriving counterparty does (ibsim/fills.py)")
    p.add_argument("--buyer-rate", type=float, default=1.0,
                   help="buyers model: counterparties arriving per second per contract")
    p.add_argument("--spread", type=float, default=0.025,
                   help="an option's half-spread as a share of its price (cap $0.50)")
    p.add_argument("--read-only", action="store_true",
                   help="IB Gateway's Read-Only API: orders, cancels and open-orders requests"
                        " are refused with 321 (POST /fault/read_only toggles it)")
    p.add_argument("--market-data", default="", metavar="SECTYPE=MODE[,...]",
                   help="market-data permissions for the whole session, e.g. OPT=none or"
                        " OPT=delayed,STK=live (modes: live, delayed, none, competing;"
                        " POST /fault/market_data changes them)")
    p.add_argument("--accounts", default=os.environ.get("IBSIM_ACCOUNTS", ""),
                   metavar="DU111,DU222",
                   help="the accounts the login manages (managedAccounts lists them; the"
                        " first replaces --account); positions and executions per account"
                        " (env IBSIM_ACCOUNTS)")
    p.add_argument("--tick-mode", choices=TICK_MODES, default="change",
                   help="change (IB's): a line ticks when its value changed, a new line gets"
                        " its current values at once; interval: every line's ticks each"
                        " --tick-interval (a steady feed for benchmarks)")
    p.add_argument("--max-rate", type=int, default=50,
                   help="IB's pacing: messages per second per client before error 100")
    p.add_argument("--tif-preset", choices=("DAY", "GTC", "IOC", "OPG"), default=None,
                   help="TWS's API order preset for the time in force: an order with another"
                        " TIF is placed with this one and warned with 10349")
    args = p.parse_args(argv)
    try:
        market_data = parse_market_data(args.market_data)
    except ValueError as exc:
        p.error(str(exc))
    if args.buyer_rate < 0 or not 0 < args.spread <= 0.5:
        p.error("--buyer-rate must be >= 0 and --spread in (0, 0.5]")
    setup_logging(args.log_dir)
    try:
        sim = make_simulator(args, market_data)
    except ValueError as exc:  # a bad --accounts, --max-rate...: named, nothing started
        p.error(str(exc))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await sim.start()
        logger.info("ibsim listening: TWS API on {}:{}, control on {}:{} (account {}, seed {})",
                    args.host, sim.gateway.port, args.host, sim.control.port, args.account,
                    args.seed)
        await stop.wait()
        await sim.stop()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
