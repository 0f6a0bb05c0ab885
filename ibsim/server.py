"""The gateway: an asyncio TCP server speaking the TWS API to each client session,
a market tick loop, and the faults the control API injects.

All simulator state is touched only on this server's loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from ibsim import feed, schedule, services, sessions, wire
from ibsim.broker import Broker, Event
from ibsim.fills import MODELS, BuyersModel
from ibsim.market import SPY_CON_ID, Market

FARM_MESSAGES = [
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
]
# Farm codes by farm: (broken, OK) as IB sends them (TWS API "Message Codes").
FARM_CODES = {
    "market": ((2103, "Market data farm connection is broken:usfarm"), FARM_MESSAGES[0]),
    "hmds": ((2105, "HMDS data farm connection is broken:ushmds"), FARM_MESSAGES[1]),
    "secdef": ((2157, "Sec-def data farm connection is broken:secdefnj"), FARM_MESSAGES[2]),
}
RESTORE_TEXT = {
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
}
LOST_TEXT = "Connectivity between IB and Trader Workstation has been lost."
# 2110 is a loss like 1100 (IB: "It will be restored automatically", by 1101/1102).
LOSS_TEXT = {
    1100: LOST_TEXT,
    2110: "Connectivity between Trader Workstation and server is broken. It will be restored"
          " automatically.",
}
ACCOUNT_TAGS = ("NetLiquidation", "TotalCashValue", "BuyingPower", "AvailableFunds",
                "ExcessLiquidity", "RealizedPnL")


def _int(v: str, default: int = 0) -> int:
    return int(v) if v not in ("", None) else default


def _float(v: str) -> float | None:
    if v in ("", None) or v.startswith("1.7976931348623157"):
        return None
    return float(v)


@dataclass
class Subscription:
    req_id: int
    contract: dict[str, Any]
    snapshot: bool = False
    generic: str = ""  # the generic tick list ("101" asks for open interest)
    quoted: bool = False  # once-a-day ticks (open, close, open interest) went out
    day_ticks: tuple[float, ...] = ()  # high, low, volume last sent: resent on change only
    touch: tuple[int, int, float, float] | None = None  # bid/ask tick types and prices sent


@dataclass
class Session:
    writer: asyncio.StreamWriter
    peer: str
    client_id: int | None = None
    data_type: int = 1
    subs: dict[int, Subscription] = field(default_factory=dict)
    wants_positions: bool = False
    wants_account: bool = False
    closed: bool = False
    held: list[bytes] | None = None  # a stalled gateway: what it will send, in order
    sent: int = 0  # frames sent to this client (its API client counts the same: numMsgRecv)
    # (time, frames sent so far) after each tick: a client's count then dates its lag.
    sent_log: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=200_000))

    def send(self, data: bytes, frames: int = 1) -> None:
        if self.closed:
            return
        self.sent += frames
        if self.held is not None:
            self.held.append(data)
            return
        self.writer.write(data)

    def release(self) -> None:
        """End of a stall: everything held goes out, in the order it was produced."""
        held, self.held = self.held, None
        if held and not self.closed:
            self.writer.write(b"".join(held))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.writer.close()


class Gateway:
    def __init__(self, host: str = "127.0.0.1", port: int = 4002, account: str = "DU1234567",
                 seed: int = 1, spot: float = 600.0, state_file: str | None = None,
                 tick_interval: float = 0.25, now: str | None = None,
                 master_client_id: int | None = None, cash: float = 100_000.0,
                 ib_schedule: bool = False, fill_model: str = "kind", buyer_rate: float = 1.0,
                 spread: float = 0.025) -> None:
        if fill_model not in MODELS:
            raise ValueError(f"fill_model must be one of {MODELS}, not {fill_model!r}")
        if not 0 < spread <= 0.5:
            raise ValueError("spread (an option's half-spread share of its price) must be in"
                             " (0, 0.5]")
        self.host, self.port = host, port
        # TWS's "Master API client ID" setting: that client also hears the orders and
        # executions of every other client and of orders entered by hand (client 0).
        self.master_client_id = master_client_id
        fixed = datetime.fromisoformat(now) if now else None
        self.market = Market(seed=seed, spot=spot, now=fixed)
        self.market.half_spread = spread
        self.broker = Broker(self.market, account=account, state_file=state_file, cash=cash)
        if fill_model == "buyers":
            self.broker.fill_model = BuyersModel(seed, buyer_rate)
        self.fill_model = fill_model
        # Quote rounds per tick (POST /market quote_burst): rounds past the first send
        # only bid/ask size changes, a feed the benchmarks can make faster than a client.
        self.quote_burst = 1
        self.ib_schedule = ib_schedule  # IB's daily reset and Sunday re-auth on the clock
        self._reset_key = ""  # the reset whose link loss is running
        # The Sunday re-auth already applied (once per week); a run starting after one
        # starts logged in.
        self._reauth_seen = schedule.last_reauth(self.market.now()).isoformat()
        self.tick_interval = tick_interval
        self.sessions: list[Session] = []
        self.server: asyncio.base_events.Server | None = None
        self.outage_until = 0.0
        self.outage_restore = 1102
        self.outage_code = 1100  # the loss code of the current outage (1100 or 2110)
        self.farms_broken: set[str] = set()  # "market" | "hmds" | "secdef"
        self.logout_until = 0.0
        # A login that waits for 2FA survives a restart of the gateway (IBC starts it
        # again and it asks for the same approval): kept beside the state file.
        self.login_file = Path(f"{state_file}.login") if state_file else None
        self.refuse_until = 0.0
        self.slow_orders = 0.0
        self.slow_orders_action = ""  # "" = every order, else only BUY or SELL ones
        self._slow_pending: dict[tuple[int, int], bool] = {}  # -> cancel on arrival
        self.freeze_until = 0.0  # requests are swallowed: a hung gateway
        self.stall_until = 0.0  # requests are handled, replies held until then
        self.fill_on_cancel = 0  # the next N cancels/modifies arrive after the fill
        self.late_cancel_code = 10148  # or 161: what the late cancel gets
        self.mute_until = 0.0  # market data stops, everything else answers
        self.restart_seconds = 1.0
        self.pending_logins: list[Session] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started = time.time()
        self.log = logger.bind(actor="gateway")
        self._load_pending_login()
        self.extras = services.Extras(self, seed)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        self._spawn(self._tick_loop())

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._client, self.host, self.port,
                                                 reuse_address=True)
        if self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for s in list(self.sessions):
            s.close()
        if self.server is not None:
            self.server.close()
        self.broker.save()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def in_outage(self) -> bool:
        return time.time() < self.outage_until

    @property
    def stalled(self) -> bool:
        return time.time() < self.stall_until

    @property
    def logged_out(self) -> bool:
        return time.time() < self.logout_until

    # ---- the tick loop -----------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.tick()
            except Exception:
                self.log.exception("tick failed")

    def tick(self) -> None:
        if self.outage_until and not self.in_outage:
            self.end_outage()
        if self.logout_until and not self.logged_out:
            self.end_logout()
        self.market.step()
        if self.broker.fill_model is not None:
            self.broker.fill_model.dt = self.tick_interval
        self._dispatch(self.broker.settle_expiries())  # the wall clock moves too
        if self.ib_schedule:
            self._ib_schedule()
        if not self.in_outage:
            self._dispatch(self.broker.match())
            if time.time() < self.mute_until or "market" in self.farms_broken:
                return
            for s in self.sessions:
                for sub in list(s.subs.values()):
                    self._send_quote(s, sub)
                if self.quote_burst > 1:
                    feed.burst(s, self.quote_burst - 1)
        now = time.time()
        for s in self.sessions:
            s.sent_log.append((now, s.sent))

    def _ib_schedule(self) -> None:
        """IB's daily reset and Sunday re-authentication on ibsim's clock."""
        now = self.market.now()
        reauth = schedule.last_reauth(now).isoformat()
        if reauth > self._reauth_seen:
            self._reauth_seen = reauth
            self.log.warning("weekly re-authentication: logged out until POST /fault/login")
            self.start_logout(10 * 365 * 86400.0)
        loss = schedule.reset_loss(now)
        if loss and not self._reset_key and not self.in_outage:
            self._reset_key = loss[0]
            self.start_outage(10 * 365 * 86400.0, loss[1], 1100)
            self.log.warning("IB daily reset ({}): link lost", loss[0])
        elif not loss and self._reset_key:
            self._reset_key = ""
            if self.outage_until:  # not already ended by hand (/fault/outage_end)
                self.end_outage()

    def _send_quote(self, s: Session, sub: Subscription) -> None:
        c = sub.contract
        if c["symbol"] != "SPY":
            services.other_quote(self, s, sub)  # QQQ, IWM, stocks, VIX, forex
            return
        delayed = s.data_type in (3, 4)
        bid_t, ask_t, last_t = (66, 67, 68) if delayed else (1, 2, 4)
        bsz_t, asz_t = (69, 70) if delayed else (0, 3)
        if c["sec_type"] == "STK":
            bid, ask, last = self.market.stock_quote()
            s.send(wire.tick_price(sub.req_id, bid_t, bid, self.market.bid_size))
            s.send(wire.tick_size(sub.req_id, bsz_t, self.market.bid_size))
            s.send(wire.tick_price(sub.req_id, ask_t, ask, self.market.ask_size))
            s.send(wire.tick_size(sub.req_id, asz_t, self.market.ask_size))
            s.send(wire.tick_price(sub.req_id, last_t, last, 100))
            services.extra_ticks(self, s, sub, first=not sub.quoted)
            sub.quoted = True
            sub.touch = (bid_t, ask_t, bid, ask)
            return
        q = self.market.option_quote(c["expiry"], c["strike"], c["right"])
        und = round(self.market.spot, 2)
        s.send(wire.tick_price(sub.req_id, bid_t, q.bid, 10))
        s.send(wire.tick_price(sub.req_id, ask_t, q.ask, 10))
        comp = (80, 81, 83) if delayed else (10, 11, 13)
        for tt in comp:
            s.send(wire.tick_option(sub.req_id, tt, q.iv, q.delta, q.model, q.gamma, q.vega,
                                    q.theta, und))
        services.extra_ticks(self, s, sub, first=not sub.quoted)
        sub.quoted = True
        sub.touch = (bid_t, ask_t, q.bid, q.ask)

    # ---- events to wire ----------------------------------------------------------------

    def _clients(self, client_id: int | None) -> list[Session]:
        return [s for s in self.sessions if s.client_id is not None
                and (client_id is None or s.client_id == client_id)]

    def _order_audience(self, client_id: int | None) -> list[Session]:
        """Who hears an order's status and executions: the client that owns it (client 0
        for an order typed into TWS), plus the master API client if one is set."""
        out = self._clients(client_id)
        master = self.master_client_id
        if client_id is not None and master is not None and master != client_id:
            out += self._clients(master)
        return out

    def _dispatch(self, events: list[Event]) -> None:
        for ev in events:
            if ev.kind == "order":
                for s in self._order_audience(ev.client_id):
                    s.send(wire.open_order(ev.data))
                    s.send(wire.order_status(ev.data))
            elif ev.kind == "exec":
                for s in self._order_audience(ev.client_id):
                    s.send(wire.exec_details(-1, ev.data))
                    s.send(wire.commission_report(ev.data))
            elif ev.kind == "reject":
                self.log.info("order {} rejected: {} {}", ev.data["order_id"], ev.data["code"],
                              ev.data["message"])
                for s in self._clients(ev.client_id):
                    s.send(wire.error(ev.data["order_id"], ev.data["code"], ev.data["message"]))
            elif ev.kind == "error":
                for s in self._clients(ev.client_id):
                    s.send(wire.error(ev.data["id"], ev.data["code"], ev.data["message"]))
            elif ev.kind == "position":
                self._push_positions(ev.data["con_id"])

    def _push_positions(self, con_id: int) -> None:
        b = self.broker
        pos = b.positions.get(con_id)
        for s in self.sessions:
            if pos is not None and s.wants_positions:
                s.send(wire.position(b.account, pos["contract"], pos["position"], pos["avg_cost"]))
            if s.wants_account:
                if pos is not None:
                    self._send_portfolio(s, pos)
                self._send_account_values(s)

    def _send_portfolio(self, s: Session, pos: dict[str, Any]) -> None:
        c = pos["contract"]
        _bid, _ask, mark = self.broker.quote_of(c)
        mult = float(c.get("multiplier") or 1)
        unreal = pos["position"] * (mark * mult - pos["avg_cost"])
        s.send(wire.portfolio(self.broker.account, c, pos["position"], mark, pos["avg_cost"],
                              unreal, 0.0))

    def _account_values(self) -> dict[str, float | str]:
        return services.account_values(self)  # the margin account: ibsim/account.py

    def _send_account_values(self, s: Session) -> None:
        services.send_account_updates(self, s)

    # ---- client sessions ---------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        session = Session(writer, peer)
        if self.stalled:
            session.held = []
        if time.time() < self.refuse_until:
            session.close()
            return
        self.sessions.append(session)
        frames = wire.FrameReader()
        try:
            if self.logged_out:
                # A gateway waiting for a login accepts TCP and then says nothing.
                self.pending_logins.append(session)
                while not session.closed and await reader.read(4096):
                    pass
                return
            while not session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for fields in frames.feed(data):
                    if session.client_id is None and fields and fields[0].startswith("v"):
                        self._handshake(session)
                        continue
                    try:
                        await self._handle(session, fields)
                    except Exception as exc:  # a bad message: tell this client only
                        self.log.warning("bad message from {}: {} ({})", peer, fields[:3], exc)
                        # The request's own id when its layout has one, so the client
                        # fails fast instead of waiting out its timeout.
                        services.unserved(session, fields, f"Error reading request: {exc}")
                await writer.drain()
        except wire.FrameError as exc:
            self.log.warning("closing {}: {}", peer, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            session.close()
            if session in self.sessions:
                self.sessions.remove(session)
            if session in self.pending_logins:
                self.pending_logins.remove(session)

    def _handshake(self, s: Session) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%d %H:%M:%S UTC")
        s.send(wire.frame(wire.SERVER_VERSION, stamp))

    async def _handle(self, s: Session, f: list[str]) -> None:
        msg = int(f[0])
        if time.time() < self.freeze_until:
            return  # a hung gateway: the socket stays open, nothing answers
        if s.client_id is None and msg != 71:
            raise ValueError("startApi expected first")
        handler = HANDLERS.get(msg)
        if handler is None:
            services.unserved(s, f)
            return
        await handler(self, s, f)

    # ---- requests ----------------------------------------------------------------------

    async def start_api(self, s: Session, f: list[str]) -> None:
        client_id = int(f[2])
        if any(o.client_id == client_id for o in self.sessions if o is not s):
            s.send(wire.error(-1, 326, "Unable to connect as the client id is already in use."
                                        " Retry with a unique client id."))
            await s.writer.drain()
            s.close()
            return
        s.client_id = client_id
        s.send(wire.frame(15, 1, self.broker.account))
        s.send(wire.frame(9, 1, self.broker.next_order_id))
        if self.in_outage:
            # A gateway cut off from IB says so at once, and has no farm to report OK.
            s.send(wire.error(-1, self.outage_code, LOSS_TEXT[self.outage_code]))
        else:
            for farm, (broken, ok) in FARM_CODES.items():
                code, text = broken if farm in self.farms_broken else ok
                s.send(wire.error(-1, code, text))
        self.log.info("client {} connected from {}", client_id, s.peer)

    async def req_positions(self, s: Session, f: list[str]) -> None:
        s.wants_positions = True
        for pos in self.broker.positions.values():
            if pos["position"] != 0:
                s.send(wire.position(self.broker.account, pos["contract"], pos["position"],
                                     pos["avg_cost"]))
        s.send(wire.frame(62, 1))

    async def cancel_positions(self, s: Session, f: list[str]) -> None:
        s.wants_positions = False

    async def req_open_orders(self, s: Session, f: list[str]) -> None:
        only = None if int(f[0]) == 16 else s.client_id
        for o in self.broker.open_orders(only):
            if o["status"] == "PendingSubmit":
                continue
            s.send(wire.open_order(o))
            s.send(wire.order_status(o))
        s.send(wire.frame(53, 1))

    async def req_completed(self, s: Session, f: list[str]) -> None:
        s.send(wire.frame(102))

    async def req_account_updates(self, s: Session, f: list[str]) -> None:
        s.wants_account = f[2] == "1"
        if not s.wants_account:
            return
        self._send_account_values(s)
        for pos in self.broker.positions.values():
            if pos["position"] != 0:
                self._send_portfolio(s, pos)
        s.send(wire.frame(8, 1, datetime.now().strftime("%H:%M")))
        s.send(wire.frame(54, 1, self.broker.account))

    async def req_account_multi(self, s: Session, f: list[str]) -> None:
        await services.req_account_multi(self, s, f)

    async def req_account_summary(self, s: Session, f: list[str]) -> None:
        await services.req_account_summary(self, s, f)

    async def req_executions(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        want_client = _int(f[3]) if len(f) > 3 else 0
        # IB's "current day": only executions since the last daily reset (23:45 ET).
        since = schedule.last_reset(self.market.now()).isoformat()
        for e in self.broker.executions:
            if want_client and e["client_id"] != want_client:
                continue
            if e.get("sim_time") and datetime.fromisoformat(e["sim_time"]) < \
                    datetime.fromisoformat(since):
                continue
            s.send(wire.exec_details(req_id, e))
            s.send(wire.commission_report(e))
        s.send(wire.frame(55, 1, req_id))

    async def req_current_time(self, s: Session, f: list[str]) -> None:
        s.send(wire.frame(49, 1, int(time.time())))

    async def req_ids(self, s: Session, f: list[str]) -> None:
        s.send(wire.frame(9, 1, self.broker.next_order_id))

    async def req_global_cancel(self, s: Session, f: list[str]) -> None:
        self._dispatch(self.broker.cancel_all())

    async def req_market_data_type(self, s: Session, f: list[str]) -> None:
        s.data_type = int(f[2])

    async def noop(self, s: Session, f: list[str]) -> None:
        return None

    @staticmethod
    def _contract_from(f: list[str], i: int) -> dict[str, Any]:
        """The 12 contract fields starting at index i."""
        return {
            "con_id": _int(f[i]), "symbol": f[i + 1], "sec_type": f[i + 2],
            "expiry": f[i + 3], "strike": _float(f[i + 4]) or 0.0, "right": f[i + 5],
            "multiplier": f[i + 6], "exchange": f[i + 7], "primary_exchange": f[i + 8],
            "currency": f[i + 9], "local_symbol": f[i + 10], "trading_class": f[i + 11],
        }

    async def req_contract_details(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        if "secdef" in self.farms_broken:
            return  # no farm to look it up: the request goes unanswered (client timeout)
        spec = self._contract_from(f, 3)
        found = self.broker.resolve(spec)
        if spec["exchange"] and spec["sec_type"] in ("", "STK"):
            found = [dict(c, exchange=spec["exchange"]) for c in found]
        if not found:
            s.send(wire.error(req_id, 200, "No security definition has been found for the"
                                           " request"))
            return
        for c in found:
            now = self.market.now()
            s.send(wire.contract_details(req_id, c, services.under_con_id(c),
                                         sessions.hours(c, now, liquid=False),
                                         sessions.hours(c, now, liquid=True)))
        s.send(wire.frame(52, 1, req_id))

    async def req_sec_def_opt_params(self, s: Session, f: list[str]) -> None:
        from ibsim.market import expirations

        req_id = int(f[1])
        if "secdef" in self.farms_broken:
            return
        if f[2].upper() != "SPY":
            s.send(wire.error(req_id, 200, "No security definition has been found for the"
                                           " request"))
            return
        exps = expirations(self.market.now())
        strikes = self.market.strikes()
        for exch in ("SMART", "CBOE"):
            s.send(wire.frame(75, req_id, exch, SPY_CON_ID, "SPY", 100, len(exps), *exps,
                              len(strikes), *strikes))
        s.send(wire.frame(76, req_id))

    async def req_mkt_data(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        spec = self._contract_from(f, 3)
        i = 15
        if spec["sec_type"] == "BAG":
            raise ValueError("combo market data is not supported")
        if f[i] == "1":  # delta-neutral contract
            i += 3
        snapshot = f[i + 2] == "1"
        if services.line_limit_reached(s, req_id, snapshot):
            return
        found = self.broker.resolve(spec)
        if len(found) != 1:
            s.send(wire.error(req_id, 200, "No security definition has been found for the"
                                           " request"))
            return
        sub = Subscription(req_id, found[0], snapshot, generic=f[i + 1])
        s.send(wire.frame(81, req_id, "0.01", "9c0001", 3))
        s.send(wire.frame(58, 1, req_id, 3 if s.data_type in (3, 4) else 1))
        if self.in_outage or "market" in self.farms_broken or time.time() < self.mute_until:
            if not snapshot:
                s.subs[req_id] = sub  # ticks start once the farm, link or feed is back
            return
        self._send_quote(s, sub)
        if snapshot:
            s.send(wire.frame(57, 1, req_id))
        else:
            s.subs[req_id] = sub

    async def cancel_mkt_data(self, s: Session, f: list[str]) -> None:
        s.subs.pop(int(f[2]), None)

    async def place_order(self, s: Session, f: list[str]) -> None:
        if len(f) < 48:
            raise ValueError(f"placeOrder with {len(f)} fields")
        if services.check_order(self, s, f):
            return  # a whatIf answered, or an order ibsim refuses (its id, its reason)
        order = {
            "order_id": int(f[1]), "client_id": s.client_id,
            "contract": self._contract_from(f, 2), "action": f[16],
            "qty": float(f[17]), "order_type": f[18], "lmt_price": _float(f[19]),
            "aux_price": _float(f[20]), "tif": f[21], "oca_group": f[22],
            "account": f[23] or self.broker.account, "order_ref": f[26],
            "transmit": f[27] != "0", "parent_id": _int(f[28]), "oca_type": _int(f[47]),
            "outside_rth": f[33] == "1",
        }
        if order["action"] not in ("BUY", "SELL"):
            raise ValueError(f"bad action {order['action']!r}")
        if order["account"] != self.broker.account:
            # IB validates the account before it takes the order: 321 on the order id,
            # no openOrder, no orderStatus (README: "Accounts").
            self.log.warning("order {}/{} refused: account {} is not managed ({})",
                             s.client_id, order["order_id"], order["account"],
                             self.broker.account)
            s.send(wire.error(order["order_id"], 321, "Error validating request.-'cq' : cause"
                                                      " - Invalid account code"))
            return
        resolved = self.broker.resolve(order["contract"])
        if len(resolved) != 1:
            s.send(wire.error(order["order_id"], 200, "No security definition has been found"
                                                      " for the request"))
            return
        order["contract"] = resolved[0]
        if order["order_type"] == "LMT" and order["lmt_price"] is None:
            s.send(wire.error(order["order_id"], 201, "Order rejected - reason: a limit order"
                                                      " needs a limit price"))
            return
        if order["order_type"] == "STP" and order["aux_price"] is None:
            s.send(wire.error(order["order_id"], 201, "Order rejected - reason: a stop order"
                                                      " needs a stop price"))
            return
        if self.slow_orders > 0 and self.slow_orders_action in ("", order["action"]):
            key = (order["client_id"], order["order_id"])
            self._slow_pending[key] = False
            self._spawn(self._place_later(order, self.slow_orders))
            return
        self._place(order)

    async def _place_later(self, order: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        key = (order["client_id"], order["order_id"])
        cancelled = self._slow_pending.pop(key, False)
        self._place(order)
        if cancelled:  # a cancel that came after this order is handled after it
            self._dispatch(self.broker.cancel(*key))

    def _place(self, order: dict[str, Any]) -> None:
        key = (order["client_id"], order["order_id"])
        if self.broker.find(*key) is not None and self._late(key, modify=True):
            return
        self.log.info("order {}/{} {} {} {} lmt={} aux={} ref={}", order["client_id"],
                      order["order_id"], order["action"], order["qty"], order["order_type"],
                      order["lmt_price"], order["aux_price"], order["order_ref"])
        self._dispatch(self.broker.place(order, self.in_outage))
        if not self.in_outage:
            self._dispatch(self.broker.match())

    async def cancel_order(self, s: Session, f: list[str]) -> None:
        assert s.client_id is not None
        key = (s.client_id, int(f[2]))
        if key in self._slow_pending:
            # A gateway handles one client's messages in order: a cancel never
            # overtakes the order it names, however slow that order is.
            self._slow_pending[key] = True
            return
        if self._late(key):
            return
        self._dispatch(self.broker.cancel(*key))

    def _late(self, key: tuple[int, int], modify: bool = False) -> bool:
        """/fault/fill_on_cancel: this cancel or modify lost the race with a fill. The
        order fills first; then 10148 (or 161) for a cancel, 104 for a modify."""
        o = self.broker.find(*key)
        if self.fill_on_cancel <= 0 or o is None or o["status"] in ("Filled", "Cancelled",
                                                                      "Inactive",
                                                                      "PendingSubmit"):
            return False
        self.fill_on_cancel -= 1
        self.log.warning("order {}/{}: {} arrives after its fill", *key,
                         "modify" if modify else "cancel")
        self._dispatch(self.broker.fill_before(o))
        if modify:
            code, text = 104, "Can't modify a filled order"
        elif self.late_cancel_code == 161:
            code, text = 161, ("Cancel attempted when order is not in a cancellable state."
                               f" Order permId ={o['perm_id']}")
        else:
            code, text = 10148, (f"OrderId {key[1]} that needs to be cancelled cannot be"
                                 " cancelled, state: Filled.")
        self._dispatch([Event("error", {"id": key[1], "code": code, "message": text}, key[0])])
        return True

    # ---- faults ------------------------------------------------------------------------

    def start_outage(self, seconds: float, restore_code: int, code: int = 1100) -> None:
        self.outage_until = time.time() + seconds
        self.outage_restore = restore_code
        self.outage_code = code
        for s in self._clients(None):
            s.send(wire.error(-1, code, LOSS_TEXT[code]))
        self.log.warning("outage {} for {}s (then {})", code, seconds, restore_code)

    def stall(self, seconds: float) -> None:
        """A busy gateway: it keeps taking requests (orders are placed, fills happen) but
        sends nothing for `seconds`, then delivers everything in order."""
        self.stall_until = time.time() + seconds if seconds else 0.0
        for s in self.sessions:
            if seconds and s.held is None:
                s.held = []
        if not seconds:
            self._release_stall()
            return
        self.log.warning("stall for {}s", seconds)
        self._spawn(self._end_stall_later(seconds))

    async def _end_stall_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not self.stalled:
            self._release_stall()

    def _release_stall(self) -> None:
        self.stall_until = 0.0
        for s in self.sessions:
            s.release()
        self.log.warning("stall over")

    def set_farm(self, farm: str, broken: bool) -> None:
        """A data farm breaks (2103/2105/2157) or comes back (2104/2106/2158): what it
        serves stops meanwhile (market: quotes; secdef: contract lookups)."""
        was = farm in self.farms_broken
        if broken:
            self.farms_broken.add(farm)
        else:
            self.farms_broken.discard(farm)
        if was == broken:
            return
        code, text = FARM_CODES[farm][0 if broken else 1]
        for s in self._clients(None):
            s.send(wire.error(-1, code, text))
        self.log.warning("{} farm {}", farm, "broken" if broken else "OK")

    def end_outage(self) -> None:
        code = self.outage_restore
        self.outage_until = 0.0
        for s in self._clients(None):
            if code == 1101:
                s.subs.clear()  # data lost: the client must request it again
            s.send(wire.error(-1, code, RESTORE_TEXT.get(code, "restored")))
        self.log.warning("outage over ({})", code)

    def drop_all(self) -> int:
        n = len(self.sessions)
        for s in list(self.sessions):
            s.close()
        return n

    def start_logout(self, seconds: float, survive_restart: bool = False) -> None:
        self.logout_until = time.time() + seconds
        if survive_restart and self.login_file is not None:
            self.login_file.write_text(json.dumps({"logout_until": self.logout_until}))
        self.drop_all()

    def _load_pending_login(self) -> None:
        if self.login_file is None or not self.login_file.exists():
            return
        try:
            until = float(json.loads(self.login_file.read_text())["logout_until"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if until > time.time():
            self.logout_until = until
            self.log.warning("started logged out: a login (2FA) is still pending")

    def end_logout(self) -> None:
        self.logout_until = 0.0
        if self.login_file is not None:
            self.login_file.unlink(missing_ok=True)
        for s in list(self.pending_logins):
            s.close()
        self.pending_logins.clear()

    def restart(self, seconds: float) -> None:
        """A gateway restart: every socket drops, connections are refused for a while.
        The listener is closed before this returns, so a connect right after is refused."""
        self.refuse(seconds)
        self.drop_all()
        self.broker.save()
        self.log.warning("gateway restarting ({}s)", seconds)

    def refuse(self, seconds: float) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.refuse_until = time.time() + seconds
        self._spawn(self._reopen(seconds))

    async def _reopen(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.server is None:
            await self._listen()
        self.refuse_until = 0.0
        self.log.warning("gateway accepting connections again")

    def set_now(self, now: datetime) -> None:
        self.market.fixed_now = now
        self._dispatch(self.broker.settle_expiries())
        if self.ib_schedule:
            self._ib_schedule()  # a clock move applies at once, not at the next tick

    def state(self) -> dict[str, Any]:
        bid, ask, last = self.market.stock_quote()
        snap = self.broker.snapshot()
        now = time.time()
        return {
            "accounts": [self.broker.account],
            "spot": round(self.market.spot, 4), "bid": bid, "ask": ask, "last": last,
            "now": self.market.now().isoformat(),
            "tick": self.market.tick_no,
            **snap,
            "clients": [{"client_id": s.client_id, "peer": s.peer,
                         "subscriptions": len(s.subs)} for s in self.sessions
                        if s.client_id is not None],
            "faults": {
                "outage": self.in_outage, "outage_seconds_left": max(0.0, self.outage_until - now),
                "outage_code": self.outage_code, "farms_broken": sorted(self.farms_broken),
                "logged_out": self.logged_out, "refusing": now < self.refuse_until,
                "hold_fills": now < self.broker.hold_fills_until,
                "slow_orders": self.slow_orders,
                "slow_pending": len(self._slow_pending),  # orders received, not yet acked
                "frozen": now < self.freeze_until,
                "stalled": now < self.stall_until,
                "muted": now < self.mute_until,
                "rejects": [r.__dict__ for r in self.broker.rejects],
                "partial_fills": self.broker.partial_count,
                "fill_on_cancel": self.fill_on_cancel,
            },
        }


Handler = Any
HANDLERS: dict[int, Handler] = {
    71: Gateway.start_api, 61: Gateway.req_positions, 64: Gateway.cancel_positions,
    5: Gateway.req_open_orders, 16: Gateway.req_open_orders, 15: Gateway.noop,
    99: Gateway.req_completed, 6: Gateway.req_account_updates,
    76: Gateway.req_account_multi, 62: Gateway.req_account_summary, 63: Gateway.noop,
    7: Gateway.req_executions, 49: Gateway.req_current_time, 8: Gateway.req_ids,
    58: Gateway.req_global_cancel, 59: Gateway.req_market_data_type,
    9: Gateway.req_contract_details, 78: Gateway.req_sec_def_opt_params,
    1: Gateway.req_mkt_data, 2: Gateway.cancel_mkt_data, 3: Gateway.place_order,
    4: Gateway.cancel_order,
}
HANDLERS.update(services.HANDLERS)  # history, completed orders, account summary
