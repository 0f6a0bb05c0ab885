"""`python -m ops.doctor [--config FILE]` (`make doctor`): the preflight before a first
sale. Configured as the engine is (the same file, the same TRADING_BOT__... overrides),
it connects to the gateway with a client id of its own (`gateway.doctor_client_id`) and
prints one line per check, PASS / FAIL / WARN, each with what to fix:

  gateway      TCP reachable and logged in (server version, connection time)
  accounts     the managed accounts against the configured mode (paper/live)
  read-only    the Read-Only API (a whatIf on the chosen put: 321 means read-only)
  underlying   a live quote for the underlying on the configured exchange
  chain        the option chain (reqSecDefOptParams) and the strategy's expiry
  option       a live quote and greeks for one put of that expiry
  margin       the whatIf margin of one lot against risk.max_margin_use
  clock        skew between this machine and the gateway's reqCurrentTime
  market data  the configured market-data type

Exit status: 0 when nothing FAILs, 1 otherwise, 2 for a bad config. It never places an
order: the only order message it sends is a whatIf (IB computes margin, nothing rests).
IB's refusals are named from the engine's own table (trading/refusals.py).
"""

from __future__ import annotations

import logging
import math
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ib_insync import IB, Contract, LimitOrder, Stock, Ticker

from config.loader import Config, cli_config
from ops.clock_source import clock_from_config
from trading.calendar import ET, TradingCalendar
from trading.margin import margin_refusal
from trading.model import WhatIfInfo
from trading.refusals import MARKET_DATA_TYPES, Refusal, refusal
from trading.risk import verify_account
from trading.strikes import choose_expiry_by_rule, choose_strike_by_distance

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
MAX_SKEW_WARN = 2.0  # seconds: order timestamps and the schedule drift
MAX_SKEW_FAIL = 30.0  # seconds: the entry time and IB's day are off


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


class Doctor:
    """Runs the checks in order; a check that cannot run (its input failed) is skipped
    with the reason, so the table always names the first thing to fix."""

    def __init__(self, cfg: Config, wall: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.wall = wall
        self.ib = IB()
        self.ib.RequestTimeout = cfg.gateway.request_timeout
        self.errors: list[tuple[int, int, str]] = []
        self.ib.errorEvent += lambda req, code, msg, _c: self.errors.append((req, code, msg))
        self.checks: list[Check] = []
        # The engine's clock (simulated in the demo): the expiry it would choose, and
        # whether quotes are to be expected now (outside the session IB may send none).
        now = clock_from_config(cfg.clock).now()
        self.today = now.astimezone(ET).date()
        self.market_open = TradingCalendar().is_market_open(now)

    def no_quote(self) -> str:
        """A missing quote FAILs in the session; outside it, IB may send none: WARN."""
        return FAIL if self.market_open else WARN

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix))

    def refused(self, req_ids: set[int], since: int = 0) -> Refusal | None:
        """IB's refusal for one of these request ids (or any id, -1 included, for an
        empty set), from the engine's table; the first blocking one wins."""
        found = [refusal(c, m, req_id=r) for r, c, m in self.errors[since:]
                 if not req_ids or r in req_ids]
        named = [r for r in found if r is not None and r.severity != "info"]
        return next((r for r in named if r.blocking), named[0] if named else None)

    # ---- the checks ---------------------------------------------------------------------

    def run(self) -> list[Check]:
        try:
            if self.connect():
                self.accounts()
                stock = self.underlying()
                put = self.chain_and_option(stock) if stock else None
                if put is not None:
                    self.what_if(*put)
                else:
                    self.add("read-only", WARN, "not checked: no put to ask a whatIf for",
                             "fix the lines above first")
                self.clock()
            self.market_data_type()
        finally:
            self.ib.disconnect()
        return self.checks

    def connect(self) -> bool:
        gw = self.cfg.gateway
        try:
            with socket.create_connection((gw.host, gw.port), timeout=gw.connect_timeout):
                pass
        except OSError as exc:
            self.add("gateway", FAIL, f"TCP {gw.host}:{gw.port} unreachable: {exc}",
                     "start IB Gateway (or `make demo` for ibsim) and check gateway.host/port "
                     "(gnzsnz/ib-gateway from another container: 4004 paper, 4003 live)")
            return False
        t0 = time.monotonic()
        try:
            # readonly=True: no open-orders request at connect (a read-only gateway answers
            # it with 321 and the sync waits out its timeout); the whatIf check asks.
            self.ib.connect(gw.host, gw.port, clientId=self.cfg.gateway.doctor_client_id,
                            timeout=gw.connect_timeout, readonly=True)
        except Exception as exc:
            in_use = any(c == 326 for _r, c, _m in self.errors)
            self.add("gateway", FAIL,
                     f"TCP open but the API did not answer: {type(exc).__name__} {exc}".strip(),
                     f"client id {gw.doctor_client_id} is in use: set gateway.doctor_client_id"
                     if in_use else
                     "log the gateway in (2FA pending?), tick 'Enable ActiveX and Socket "
                     "Clients' and add this host to 'Trusted IPs' (Configure > Settings > API)")
            return False
        took = time.monotonic() - t0
        self.add("gateway", PASS,
                 f"{gw.host}:{gw.port} logged in, server version "
                 f"{self.ib.client.serverVersion()}, connected at "
                 f"{datetime.fromtimestamp(self.wall(), UTC):%Y-%m-%d %H:%M:%S} UTC in "
                 f"{took:.1f}s")
        return True

    def accounts(self) -> None:
        gw = self.cfg.gateway
        accounts = tuple(self.ib.managedAccounts())
        account, problem = verify_account(accounts, gw.account, gw.mode)
        if problem:
            self.add("accounts", FAIL, f"{', '.join(accounts) or 'none'}: {problem}",
                     "log the gateway in with the account of gateway.mode (paper accounts "
                     "start with DU), or set gateway.mode / gateway.account to match")
        else:
            self.add("accounts", PASS, f"{', '.join(accounts)}; trading {account} "
                     f"({gw.mode})")

    def _quote(self, contract: Contract, need_greeks: bool) -> tuple[Ticker, Refusal | None]:
        since = len(self.errors)
        ticker = self.ib.reqMktData(contract, "", False, False)
        deadline = time.monotonic() + self.cfg.gateway.request_timeout
        req_ids = {r for r, t in self.ib.wrapper.reqId2Ticker.items() if t is ticker}

        def complete() -> bool:
            greeks = ticker.modelGreeks
            return _num(ticker.bid) is not None and _num(ticker.ask) is not None and (
                not need_greeks or (greeks is not None and _num(greeks.delta) is not None))

        while time.monotonic() < deadline and not complete():
            r = self.refused(req_ids, since)
            if r is not None and r.effect in ("skip", "wait") and r.code != 10090:
                break
            self.ib.sleep(0.05)
        self.ib.cancelMktData(contract)
        return ticker, self.refused(req_ids, since)

    def underlying(self) -> Contract | None:
        s = self.cfg.strategy
        stock = Stock(s.symbol, s.exchange, "USD")
        if not self.ib.qualifyContracts(stock):
            self.add("underlying", FAIL, f"no contract {s.symbol} on {s.exchange} (IB 200)",
                     "check strategy.symbol and strategy.exchange")
            return None
        ticker, r = self._quote(stock, False)
        kind = MARKET_DATA_TYPES.get(ticker.marketDataType, str(ticker.marketDataType))
        if _num(ticker.bid) is None or _num(ticker.ask) is None:
            self.add("underlying", FAIL if r else self.no_quote(),
                     f"{s.symbol} on {s.exchange}: no bid/ask"
                     + (f": {r.describe()}" if r else " within the request timeout"
                        + ("" if self.market_open else " (market closed now)")),
                     r.fix if r else "check the market-data farm (2104) and subscriptions; "
                     "outside the session run it again during market hours")
            return stock  # the chain and the put are still worth asking for
        status = PASS if ticker.marketDataType == 1 else WARN
        self.add("underlying", status, f"{s.symbol} on {s.exchange} bid {ticker.bid} ask "
                 f"{ticker.ask} ({kind})", "" if status == PASS else
                 "subscribe to the exchange's live data for API use")
        self.spot = (ticker.bid + ticker.ask) / 2
        return stock

    def chain_and_option(self, stock: Contract) -> tuple[Contract, float] | None:
        s = self.cfg.strategy
        params = self.ib.reqSecDefOptParams(s.symbol, "", "STK", stock.conId)
        chain = next((p for p in params if p.exchange == "SMART"), params[0] if params else None)
        if chain is None or not chain.expirations:
            self.add("chain", FAIL, f"no option chain for {s.symbol} (reqSecDefOptParams "
                     "answered nothing)", "check the sec-def farm (2158) and option permissions")
            return None
        today = self.today
        expiry = choose_expiry_by_rule(sorted(chain.expirations), today, s.target_dte,
                                       s.expiry_rule)
        self.add("chain", PASS, f"{len(chain.expirations)} expiries, {len(chain.strikes)} "
                 f"strikes; the strategy's expiry {expiry} ({s.expiry_rule}, {s.target_dte} "
                 "days)")
        spot = getattr(self, "spot", 0.0) or sorted(chain.strikes)[len(chain.strikes) // 2]
        strike = choose_strike_by_distance(sorted(chain.strikes), spot,
                                           max(s.otm_distance, 0.03))
        put = Contract(secType="OPT", symbol=s.symbol, lastTradeDateOrContractMonth=expiry,
                       strike=strike, right="P", exchange="SMART", currency="USD")
        if not self.ib.qualifyContracts(put):
            self.add("option", FAIL, f"no contract for the {s.symbol} {expiry} {strike} put "
                     "(IB 200)", "check strategy.expiry_rule against the chain")
            return None
        ticker, r = self._quote(put, True)
        greeks = ticker.modelGreeks
        if _num(ticker.bid) is None or _num(ticker.ask) is None:
            self.add("option", FAIL if r else self.no_quote(), f"{put.localSymbol}: no bid/ask"
                     + (f": {r.describe()}" if r else " within the request timeout"
                        + ("" if self.market_open else " (market closed now)")),
                     r.fix if r else "subscribe to OPRA (US options) for API use; outside "
                     "the session run it again during market hours")
            return put, 0.0
        kind = MARKET_DATA_TYPES.get(ticker.marketDataType, str(ticker.marketDataType))
        if greeks is None or _num(greeks.delta) is None:
            self.add("option", WARN, f"{put.localSymbol} bid {ticker.bid} ask {ticker.ask} "
                     f"({kind}) but no greeks", "subscribe to the underlying's data too "
                     "(IB computes greeks from it): strike by delta needs them")
        else:
            status = PASS if ticker.marketDataType == 1 else WARN
            self.add("option", status, f"{put.localSymbol} bid {ticker.bid} ask {ticker.ask} "
                     f"delta {greeks.delta:.3f} ({kind})", "" if status == PASS else
                     "live sales need live data: subscribe to OPRA for API use")
        return put, float(ticker.bid)

    def what_if(self, put: Contract, bid: float) -> None:
        since = len(self.errors)
        order = LimitOrder("SELL", self.cfg.strategy.quantity, max(bid, 0.05), tif="DAY")
        account = self.cfg.gateway.account or next(iter(self.ib.managedAccounts()), "")
        order.account = account
        try:
            state = self.ib.whatIfOrder(put, order)
        except Exception as exc:  # a timeout: no answer at all
            state, failure = None, f"{type(exc).__name__} {exc}"
        else:
            failure = ""
        r = self.refused(set(), since)
        if r is not None and r.key == "321:read_only":
            self.add("read-only", FAIL, r.message, r.fix)
            self.add("margin", WARN, "not checked: the whatIf was refused (read-only)",
                     "fix the read-only line first")
            return
        figures = {k: _num(getattr(state, k, None)) for k in (
            "initMarginBefore", "initMarginChange", "initMarginAfter", "maintMarginAfter",
            "equityWithLoanAfter")}
        if not state or any(v is None for v in figures.values()):
            why = r.describe() if r else (failure or "the whatIf came back without figures")
            self.add("read-only", WARN, f"whatIf not answered: {why}",
                     r.fix if r else "look at the gateway's API log")
            self.add("margin", FAIL, f"no margin figures: {why}", r.fix if r else
                     "check option trading permissions for the account")
            return
        self.add("read-only", PASS, "a whatIf on the chosen put was answered: orders are "
                 "accepted")
        net = next((_num(v.value) for v in self.ib.accountValues(account)
                    if v.tag == "NetLiquidation" and v.currency in ("USD", "BASE")), None)
        info = WhatIfInfo(figures["initMarginBefore"] or 0.0, figures["initMarginChange"] or 0.0,
                          figures["initMarginAfter"] or 0.0, figures["maintMarginAfter"] or 0.0,
                          figures["equityWithLoanAfter"] or 0.0, 0.0, net or 0.0)
        why = margin_refusal(info, self.cfg.risk.max_margin_use) if net else \
            "no NetLiquidation in the account values"
        detail = (f"one lot ({self.cfg.strategy.quantity}) of {put.localSymbol}: initial "
                  f"margin {info.init_before:.0f} -> {info.init_after:.0f}"
                  + (f" of net liquidation {net:.0f}" if net else ""))
        if why:
            self.add("margin", FAIL, f"{detail}: {why}", "add funds, or lower "
                     "strategy.quantity / raise risk.max_margin_use")
        else:
            self.add("margin", PASS, detail)

    def clock(self) -> None:
        t0 = self.wall()
        gateway = self.ib.reqCurrentTime().timestamp()
        t1 = self.wall()
        # The gateway sends whole seconds: up to 1 s of it is rounding.
        skew = gateway - (t0 + t1) / 2
        detail = f"gateway {skew:+.1f}s from this machine"
        if abs(skew) > MAX_SKEW_FAIL:
            self.add("clock", FAIL, detail, "sync this machine's clock (NTP: chrony/timedatectl)")
        elif abs(skew) > MAX_SKEW_WARN:
            self.add("clock", WARN, detail, "sync this machine's clock (NTP)")
        else:
            self.add("clock", PASS, detail)

    def market_data_type(self) -> None:
        gw = self.cfg.gateway
        kind = MARKET_DATA_TYPES.get(gw.market_data_type, str(gw.market_data_type))
        if gw.market_data_type == 1:
            self.add("market data", PASS, "type 1 (live)")
        elif gw.mode == "live":
            self.add("market data", FAIL, f"type {gw.market_data_type} ({kind}) in live mode",
                     "set gateway.market_data_type = 1: no live sale on delayed quotes")
        else:
            self.add("market data", WARN, f"type {gw.market_data_type} ({kind}): paper only, "
                     "quotes may be 15 minutes old", "subscribe and set "
                     "gateway.market_data_type = 1 before going live")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or f == -1 or abs(f) > 1e300 else f


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != PASS:
            lines.append(f"      {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = cli_config("python -m ops.doctor", argv, description=__doc__.split("\n\n")[0])
    # The table names every refusal with its fix: ib_insync's own error lines would repeat
    # them after it, out of order, on stderr.
    logging.getLogger("ib_insync").setLevel(logging.CRITICAL)
    checks = Doctor(cfg).run()
    print(table(checks))
    failed = [c.name for c in checks if c.status == FAIL]
    print(f"\n{len(checks)} checks: {len(failed)} FAIL"
          + (f" ({', '.join(failed)})" if failed else "; ready for a first sale"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
