"""The gateway: an asyncio TCP server speaking the TWS API to each client session,
a market tick loop, and the faults the control API injects. It has the parts the
request handlers take (ibsim/parts.py); they never import it.

All simulator state is touched only on this server's loop thread. The gateway's
concerns live beside it: ibsim/client.py (a session), ibsim/handlers.py (the request
table), ibsim/quotes.py (market data), ibsim/ordering.py (orders), ibsim/fanout.py
(events to clients), ibsim/faults.py (faults).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger

from ibsim import codes, feed, pacing, quotes, schedule, services, wire
from ibsim.broker import Broker
from ibsim.client import Session, Subscription, listen
from ibsim.extras import Extras
from ibsim.fanout import Fanout
from ibsim.faults import FARM_CODES, FARM_MESSAGES, LOSS_TEXT, LOST_TEXT, RESTORE_TEXT, Faults
from ibsim.fills import MODELS, BuyersModel
from ibsim.handlers import HANDLERS
from ibsim.market import Market
from ibsim.ordering import Ordering
from ibsim.parts import Handler

TICK_MODES = ("change", "interval")

__all__ = ["FARM_CODES", "FARM_MESSAGES", "HANDLERS", "LOSS_TEXT", "LOST_TEXT", "RESTORE_TEXT",
           "Gateway", "Handler", "Session", "Subscription"]


class Gateway(Fanout, Faults, Ordering):
    def __init__(self, host: str = "127.0.0.1", port: int = 4002, account: str = "DU1234567",
                 seed: int = 1, spot: float = 600.0, state_file: str | None = None,
                 tick_interval: float = 0.25, now: str | None = None,
                 master_client_id: int | None = None, cash: float = 100_000.0,
                 ib_schedule: bool = False, fill_model: str = "kind", buyer_rate: float = 1.0,
                 spread: float = 0.025, read_only: bool = False, tick_mode: str = "change",
                 market_data: dict[str, str] | None = None,
                 max_rate: int = pacing.MAX_RATE, tif_preset: str | None = None,
                 accounts: list[str] | None = None) -> None:
        if fill_model not in MODELS:
            raise ValueError(f"fill_model must be one of {MODELS}, not {fill_model!r}")
        if tick_mode not in TICK_MODES:
            raise ValueError(f"tick_mode must be one of {TICK_MODES}, not {tick_mode!r}")
        for sec_type, mode in (market_data or {}).items():
            if mode not in quotes.MD_MODES:
                raise ValueError(f"market data mode for {sec_type} must be one of"
                                 f" {quotes.MD_MODES}, not {mode!r}")
        if not 0 < spread <= 0.5:
            raise ValueError("spread (an option's half-spread share of its price) must be in"
                             " (0, 0.5]")
        self.host, self.port = host, port
        # TWS's "Master API client ID" setting: that client also hears the orders and
        # executions of every other client and of orders entered by hand (client 0).
        self.master_client_id = master_client_id
        # IB Gateway's "Read-Only API" setting (its default): orders, cancels and the
        # open/completed orders requests are refused with 321 (--read-only,
        # POST /fault/read_only).
        self.read_only = read_only
        fixed = datetime.fromisoformat(now) if now else None
        self.market = Market(seed=seed, spot=spot, now=fixed)
        self.market.half_spread = spread
        if accounts is not None and (not accounts or not all(accounts)
                                     or len(set(accounts)) != len(accounts)):
            raise ValueError(f"accounts must be distinct non-empty names, not {accounts!r}")
        # --accounts DU111,DU222: the login manages several; the first is `account`.
        self.broker = Broker(self.market, account=accounts[0] if accounts else account,
                             state_file=state_file, cash=cash,
                             accounts=list(accounts) if accounts else [account])
        if tif_preset not in (None, "", "DAY", "GTC", "IOC", "OPG"):
            raise ValueError(f"tif_preset must be DAY, GTC, IOC or OPG, not {tif_preset!r}")
        self.broker.tif_preset = tif_preset or None
        if fill_model == "buyers":
            self.broker.fill_model = BuyersModel(seed, buyer_rate)
        self.fill_model = fill_model
        # Quote rounds per tick (POST /market quote_burst): rounds past the first send
        # only bid/ask size changes, a feed the benchmarks can make faster than a client.
        self.quote_burst = 1
        self.ib_schedule = ib_schedule  # IB's daily reset and Sunday re-auth on the clock
        self._reset_key = ""  # the reset whose link loss is running
        # The Sunday re-auth already applied (once per week); a run starting after one
        # starts logged in. Kept beside the state file: a gateway restarted (its clock
        # starting from --now again, then set forward) does not take a re-auth it already
        # went through for a new one.
        self.reauth_file = Path(f"{state_file}.reauth") if state_file else None
        self._reauth_seen = max(schedule.last_reauth(self.market.now()).isoformat(),
                                self._saved_reauth())
        self.tick_interval = tick_interval
        # IB sends a tick when its value changed ("change"); "interval" re-sends every
        # line's ticks each round (--tick-mode; benches that want a steady feed).
        self.tick_mode = tick_mode
        # The account's market-data permissions by secType (POST /fault/market_data,
        # --market-data): absent = live; "delayed", "none" or "competing".
        self.md_modes: dict[str, str] = {k: v for k, v in (market_data or {}).items()
                                          if v != "live"}
        # (simulated time, spot) each tick: delayed quotes are priced fifteen minutes back.
        self.spot_log: deque[tuple[datetime, float]] = deque(maxlen=50_000)
        self.spot_log.append((self.market.now(), self.market.spot))
        self._lines_paused = False  # quotes held back (mute, broken farm): refresh after
        self.sessions: list[Session] = []
        if max_rate < 1:
            raise ValueError("max_rate must be at least 1 message per second")
        self.max_rate = max_rate  # IB's pacing limit (--max-rate; IB's is 50)
        self.gone: deque[dict[str, Any]] = deque(maxlen=100)  # closed clients' stats
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
        self._slow_release = asyncio.Event()  # set: every held order goes through now
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
        self.extras = Extras(self.broker, self.market, seed)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        self._spawn(self._tick_loop())

    async def _listen(self) -> None:
        self.server, self.port = await listen(self._client, self.host, self.port)

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
        self.spot_log.append((self.market.now(), self.market.spot))
        if self.broker.fill_model is not None:
            self.broker.fill_model.dt = self.tick_interval
        self._dispatch(self.broker.settle_expiries())  # the wall clock moves too
        if self.ib_schedule:
            self._ib_schedule()
        if not self.in_outage:
            self._dispatch(self.broker.match())
            if time.time() < self.mute_until or "market" in self.farms_broken:
                self._lines_paused = True
                return
            if self._lines_paused:
                self.refresh_lines()
            for s in self.sessions:
                for sub in list(s.subs.values()):
                    quotes.send_quote(self, s, sub)
                if self.quote_burst > 1:
                    feed.burst(s, self.quote_burst - 1)
        now = time.time()
        for s in self.sessions:
            s.sent_log.append((now, s.sent))

    def _saved_reauth(self) -> str:
        try:
            return self.reauth_file.read_text().strip() if self.reauth_file else ""
        except OSError:
            return ""

    def _ib_schedule(self) -> None:
        """IB's daily reset and Sunday re-authentication on ibsim's clock."""
        now = self.market.now()
        reauth = schedule.last_reauth(now).isoformat()
        if reauth > self._reauth_seen:
            self._reauth_seen = reauth
            if self.reauth_file is not None:
                self.reauth_file.write_text(reauth)
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

    # ---- client sessions ---------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        session = Session(writer, peer)
        session.pacer.max_rate = self.max_rate
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
                batch = frames.feed(data)
                corked = self._cork() if len(batch) > 1 else None
                try:
                    for fields in batch:
                        await self._handle_frame(session, fields, peer)
                finally:
                    self._uncork(corked)
                await writer.drain()
        except wire.FrameError as exc:
            self.log.warning("closing {}: {}", peer, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            session.close()
            if session.client_id is not None:
                self.gone.append(self._client_stats(session))
            if session in self.sessions:
                self.sessions.remove(session)
            if session in self.pending_logins:
                self.pending_logins.remove(session)

    async def _handle_frame(self, session: Session, fields: list[str], peer: str) -> None:
        if session.client_id is None and fields and fields[0].startswith("v"):
            self._handshake(session)
            return
        if self._paced(session):
            return
        try:
            await self._handle(session, fields)
        except Exception as exc:  # a bad message: tell this client only
            self.log.warning("bad message from {}: {} ({})", peer, fields[:3], exc)
            # The request's own id when its layout has one, so the client
            # fails fast instead of waiting out its timeout.
            services.unserved(session, fields, f"Error reading request: {exc}")

    def _cork(self) -> tuple[bool, list[Session]]:
        """Several requests read at once (a client's burst of cancels, say): the state
        file is written once for all of them, not once per order (each write serialises
        every order kept: ~3 ms with a few hundred), and nothing is sent to any client
        before that write, so a gateway killed at any moment still loses nothing it
        answered. Returns whether this batch is the outermost and the sessions it corked."""
        outer = not self.broker.defer_saves
        self.broker.defer_saves = True
        corked = [s for s in self.sessions if s.corked is None and not s.closed]
        for s in corked:
            s.cork()
        return outer, corked

    def _uncork(self, token: tuple[bool, list[Session]] | None) -> None:
        if token is None:
            return
        outer, corked = token
        if outer:
            self.broker.defer_saves = False
            if self.broker.save_deferred:
                self.broker.save()
        for s in corked:
            s.uncork()

    def _paced(self, s: Session) -> bool:
        """IB's pacing (ibsim/pacing.py): True when this message is past the limit (100
        answered, not served; a sustained excess closes the socket)."""
        rank = s.pacer.admit(time.monotonic())
        if not rank:
            return False
        s.send(wire.error(-1, 100, codes.text(100, max=s.pacer.max_rate, rec=rank)))
        if s.pacer.sustained and not s.closed:
            self.log.warning("client {} over {} messages/s for {}s: disconnected",
                             s.client_id, s.pacer.max_rate, pacing.SUSTAINED)
            s.paced_out = True
            s.close()
        return True

    def _client_stats(self, s: Session) -> dict[str, Any]:
        return {"client_id": s.client_id, "peer": s.peer, "connected": not s.closed,
                "disconnected_for_pacing": s.paced_out, **s.pacer.stats()}

    def stats(self) -> dict[str, Any]:
        """GET /stats: each client's message counts and peak rate (closed ones too)."""
        return {"max_rate": self.max_rate, "clients": [
            *list(self.gone), *(self._client_stats(s) for s in self.sessions
                                if s.client_id is not None)]}

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

    def refresh_lines(self) -> None:
        """Quotes flow again after a pause (link, farm or feed back): every line gets its
        current values at the next tick, changed or not (--tick-mode change)."""
        self._lines_paused = False
        for s in self.sessions:
            for sub in s.subs.values():
                sub.sent = {}

    def spot_ago(self, delay: timedelta) -> float:
        """SPY's price `delay` ago on ibsim's clock (the oldest known if none is that old:
        a clock held still keeps its first price as the delayed one)."""
        when = self.market.now() - delay
        for t, spot in reversed(self.spot_log):
            if t <= when:
                return spot
        return self.spot_log[0][1]

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
            "accounts": list(self.broker.accounts),
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
                "read_only": self.read_only,
                "market_data": dict(self.md_modes),
            },
            "tick_mode": self.tick_mode,
            "tif_preset": self.broker.tif_preset,
        }

