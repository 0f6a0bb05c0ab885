"""The control API: HTTP/1.1 + JSON on the control port (loopback), on the gateway's loop.

GET /state, /stats; POST /market, /clock, /restart,
/fault/{outage,outage_end,farm,drop,logout,login,reject,hold_fills,slow_orders,refuse,freeze,mute,read_only,market_data},
/order/{cancel,external}, /scenario/filled_while_away.
A bad request gets 400 (404 for an unknown path) with {"error": ...} and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ibsim import quotes, schedule
from ibsim.client import listen
from ibsim.orders import RejectRule
from ibsim.server import Gateway

MAX_BODY = 64 * 1024
SEC_TYPES = ("STK", "OPT", "IND", "CASH", "FUT", "FOP", "BAG")


class BadRequest(ValueError):
    pass


def _num(body: dict[str, Any], key: str, default: float | None = None, lo: float = 0.0,
         hi: float = 1e9) -> float:
    if key not in body:
        if default is None:
            raise BadRequest(f"missing {key!r}")
        return default
    v = body[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadRequest(f"{key!r} must be a number")
    if not lo <= v <= hi:
        raise BadRequest(f"{key!r} must be between {lo} and {hi}")
    return float(v)


class ControlServer:
    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 4010) -> None:
        self.gw = gateway
        self.host, self.port = host, port
        self.server: asyncio.base_events.Server | None = None
        self.routes: dict[tuple[str, str], Callable[[dict[str, Any]], Awaitable[Any]]] = {
            ("GET", "/state"): self.get_state,
            ("GET", "/stats"): self.get_stats,
            ("POST", "/market"): self.market,
            ("POST", "/feed"): self.feed,
            ("POST", "/clock"): self.clock,
            ("POST", "/restart"): self.restart,
            ("POST", "/fault/outage"): self.outage,
            ("POST", "/fault/outage_end"): self.outage_end,
            ("POST", "/fault/farm"): self.farm,
            ("POST", "/fault/drop"): self.drop,
            ("POST", "/fault/logout"): self.logout,
            ("POST", "/fault/login"): self.login,
            ("POST", "/fault/reject"): self.reject,
            ("POST", "/fault/hold_fills"): self.hold_fills,
            ("POST", "/fault/slow_orders"): self.slow_orders,
            ("POST", "/fault/refuse"): self.refuse,
            ("POST", "/order/cancel"): self.cancel_order,
            ("POST", "/order/external"): self.external_orders,
            ("POST", "/fault/freeze"): self.freeze,
            ("POST", "/fault/mute"): self.mute,
            ("POST", "/fault/partial_fills"): self.partial_fills,
            ("POST", "/fault/stall"): self.stall,
            ("POST", "/fault/fill_on_cancel"): self.fill_on_cancel,
            ("POST", "/assign"): self.assign,
            ("POST", "/fault/read_only"): self.read_only,
            ("POST", "/fault/market_data"): self.market_data,
            ("POST", "/scenario/filled_while_away"): self.filled_while_away,
        }

    async def start(self) -> None:
        self.server, self.port = await listen(self._serve, self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, payload = 500, {"error": "internal error"}
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in
                       (line.split(":", 1) for line in lines[1:] if ":" in line)}
            length = int(headers.get("content-length", "0") or 0)
            if length < 0 or length > MAX_BODY:
                raise BadRequest("body too large")
            raw = await reader.readexactly(length) if length else b""
            path = path.split("?", 1)[0]
            route = self.routes.get((method, path))
            if route is None:
                known = {p for _m, p in self.routes}
                status = 405 if path in known else 404
                payload = {"error": f"no route {method} {path}"}
            else:
                body: Any = {}
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except json.JSONDecodeError as exc:
                        raise BadRequest(f"body is not JSON: {exc}") from None
                if not isinstance(body, dict):
                    raise BadRequest("body must be a JSON object")
                status, payload = 200, await route(body)
        except BadRequest as exc:
            status, payload = 400, {"error": str(exc)}
        except (asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            status, payload = 400, {"error": f"bad request: {exc}"}
        except Exception as exc:  # never let the control API take the gateway down
            status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(payload, default=str).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        writer.write(
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        try:
            await writer.drain()
        finally:
            writer.close()

    # ---- routes ------------------------------------------------------------------------

    async def get_state(self, body: dict[str, Any]) -> Any:
        return self.gw.state()

    async def get_stats(self, body: dict[str, Any]) -> Any:
        """Each client's messages, peak rate (most in one second) and messages refused
        with 100 (IB's pacing), closed clients included (the last 100)."""
        return self.gw.stats()

    async def market(self, body: dict[str, Any]) -> Any:
        allowed = {"spot", "volatility", "tick_interval", "drift", "walk_sigma", "quote_burst"}
        unknown = set(body) - allowed
        if unknown:
            raise BadRequest(f"unknown keys {sorted(unknown)}")
        spot = _num(body, "spot", self.gw.market.spot, 1.0, 100_000.0)
        vol = _num(body, "volatility", self.gw.market.volatility, 0.01, 5.0)
        tick = _num(body, "tick_interval", self.gw.tick_interval, 0.001, 60.0)
        drift = _num(body, "drift", self.gw.market.drift, -0.1, 0.1)
        sigma = _num(body, "walk_sigma", self.gw.market.walk_sigma, 0.0, 0.1)
        burst = _num(body, "quote_burst", self.gw.quote_burst, 1, 100_000)
        if burst != int(burst):
            raise BadRequest("'quote_burst' must be a whole number")
        self.gw.quote_burst = int(burst)
        m = self.gw.market
        m.spot, m.volatility, m.drift, m.walk_sigma = spot, vol, drift, sigma
        self.gw.tick_interval = tick
        m.fair = {}
        self.gw.tick()  # quotes and matching see the new price at once
        return {"spot": m.spot, "volatility": m.volatility, "tick_interval": tick,
                "quote_burst": self.gw.quote_burst}

    async def feed(self, body: dict[str, Any]) -> Any:
        """Frames sent to each client, and (time, count) after each tick since `since`."""
        unknown = set(body) - {"since"}
        if unknown:
            raise BadRequest(f"unknown keys {sorted(unknown)}")
        since = _num(body, "since", 0.0, 0.0, 1e12)
        return {"sessions": [
            {"client_id": s.client_id, "sent": s.sent,
             "log": [[t, n] for t, n in s.sent_log if t >= since]}
            for s in self.gw.sessions if s.client_id is not None]}

    async def clock(self, body: dict[str, Any]) -> Any:
        now = body.get("now")
        if not isinstance(now, str):
            raise BadRequest("'now' must be an ISO time string")
        try:
            when = datetime.fromisoformat(now)
        except ValueError:
            raise BadRequest(f"'now' is not an ISO time: {now!r}") from None
        if when.tzinfo is None:
            raise BadRequest("'now' needs a UTC offset")
        self.gw.set_now(when)
        return {"now": self.gw.market.now().isoformat(), "settled": self.gw.broker.settled[-10:]}

    async def restart(self, body: dict[str, Any]) -> Any:
        seconds = _num(body, "seconds", self.gw.restart_seconds, 0.0, 600.0)
        self.gw.restart(seconds)
        return {"restarting": True, "seconds": seconds}

    async def outage(self, body: dict[str, Any]) -> Any:
        """IB loses the gateway: `code` 1100 (default) or 2110 (both a loss, IB's
        message codes), restored by `restore_code` 1101 or 1102 after `seconds`."""
        seconds = _num(body, "seconds", 30.0, 0.0, 86400.0)
        code = body.get("code", 1100)
        if isinstance(code, bool) or code not in (1100, 2110):
            raise BadRequest("'code' must be 1100 or 2110")
        restore = body.get("restore_code", 1102)
        if isinstance(restore, bool) or restore not in (1101, 1102):
            raise BadRequest("'restore_code' must be 1101 or 1102")
        self.gw.start_outage(seconds, int(restore), int(code))
        return {"outage": True, "seconds": seconds, "code": code, "restore_code": restore}

    async def farm(self, body: dict[str, Any]) -> Any:
        farm, broken = body.get("farm"), body.get("broken", True)
        if farm not in ("market", "hmds", "secdef"):
            raise BadRequest("'farm' must be market, hmds or secdef")
        if not isinstance(broken, bool):
            raise BadRequest("'broken' must be true or false")
        self.gw.set_farm(farm, broken)
        return {"farm": farm, "broken": broken, "farms_broken": sorted(self.gw.farms_broken)}

    async def outage_end(self, body: dict[str, Any]) -> Any:
        if self.gw.outage_until:
            self.gw.end_outage()
        return {"outage": False}

    async def drop(self, body: dict[str, Any]) -> Any:
        return {"dropped": self.gw.drop_all()}

    async def logout(self, body: dict[str, Any]) -> Any:
        seconds = _num(body, "seconds", 60.0, 0.0, 86400.0)
        survive = body.get("survive_restart", False)
        if not isinstance(survive, bool):
            raise BadRequest("'survive_restart' must be true or false")
        self.gw.start_logout(seconds, survive)
        return {"logged_out": True, "seconds": seconds, "survive_restart": survive}

    async def login(self, body: dict[str, Any]) -> Any:
        self.gw.end_logout()
        return {"logged_out": False}

    async def reject(self, body: dict[str, Any]) -> Any:
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
            raise BadRequest("'count' must be an integer 0..10000")
        code = body.get("code", 201)
        if isinstance(code, bool) or not isinstance(code, int):
            raise BadRequest("'code' must be an integer")
        action = body.get("action")
        if action not in (None, "BUY", "SELL"):
            raise BadRequest("'action' must be BUY or SELL")
        otype = body.get("order_type")
        if otype not in (None, "MKT", "LMT", "STP"):
            raise BadRequest("'order_type' must be MKT, LMT or STP")
        sec_type = body.get("sec_type")
        if sec_type not in (None, *SEC_TYPES):
            raise BadRequest(f"'sec_type' must be one of {list(SEC_TYPES)}")
        message = body.get("message", "Order rejected - reason: simulated rejection")
        if not isinstance(message, str):
            raise BadRequest("'message' must be a string")
        if count == 0:
            self.gw.broker.rejects.clear()
        else:
            self.gw.broker.rejects.append(RejectRule(count, code, message, action, otype,
                                                         sec_type))
        return {"rejects": [r.__dict__ for r in self.gw.broker.rejects]}

    async def read_only(self, body: dict[str, Any]) -> Any:
        """{"on": true|false}: IB Gateway's Read-Only API setting. On: every placeOrder
        (whatIf too) and cancelOrder gets 321 on its id, reqOpenOrders and
        reqCompletedOrders get 321 on -1 (no end marker); other requests are served."""
        unknown = set(body) - {"on"}
        if unknown:
            raise BadRequest(f"unknown keys {sorted(unknown)}")
        on = body.get("on")
        if not isinstance(on, bool):
            raise BadRequest("'on' must be true or false")
        self.gw.read_only = on
        self.gw.log.warning("Read-Only API {}", "on" if on else "off")
        return {"read_only": on}

    async def market_data(self, body: dict[str, Any]) -> Any:
        """{"sec_type": "OPT", "mode": "none"|"delayed"|"competing"|"live"}: the account's
        market-data permission for that secType. none: reqMktData gets 354, no line;
        delayed: 10167, then delayed ticks (66-76) fifteen minutes old if the client asked
        reqMarketDataType 3 (else 354); competing: 10197 on every line of it, which stay
        open and silent; live lifts it (lines get their current values, and 2104).
        Lines already open hear the change at once."""
        unknown = set(body) - {"sec_type", "mode"}
        if unknown:
            raise BadRequest(f"unknown keys {sorted(unknown)}")
        sec_type, mode = body.get("sec_type"), body.get("mode")
        if sec_type not in SEC_TYPES:
            raise BadRequest(f"'sec_type' must be one of {list(SEC_TYPES)}")
        if mode not in quotes.MD_MODES:
            raise BadRequest(f"'mode' must be one of {list(quotes.MD_MODES)}")
        quotes.set_md_mode(self.gw, sec_type, mode)
        return {"market_data": dict(self.gw.md_modes)}

    async def filled_while_away(self, body: dict[str, Any]) -> Any:
        """The sale filled while the engine was down, and the reset passed, in one call
        (stop the engine first). {"order_ref": R} | {"order_ref_prefix": P} |
        {"perm_id": N} | {} (every open order): those orders fill whole now, at their
        limit, then the clock moves past the next daily reset. After it, reqExecutions
        and reqCompletedOrders no longer report the fills (IB's current day turned
        over); positions, portfolio and the account show them. Returns the filled
        orders (order_id, perm_id, order_ref), the fill time and the new clock."""
        unknown = set(body) - {"order_ref", "order_ref_prefix", "perm_id"}
        if unknown:
            raise BadRequest(f"unknown keys {sorted(unknown)}")
        ref, prefix, perm = body.get("order_ref"), body.get("order_ref_prefix"), \
            body.get("perm_id")
        if any(v is not None and not isinstance(v, t) for v, t in
               ((ref, str), (prefix, str), (perm, int))):
            raise BadRequest("'order_ref' and 'order_ref_prefix' are strings, 'perm_id' an"
                             " integer")
        matches = [o for o in self.gw.broker.open_orders()
                   if o["status"] != "PendingSubmit"
                   and (ref is None or o.get("order_ref") == ref)
                   and (prefix is None or o.get("order_ref", "").startswith(prefix))
                   and (perm is None or o["perm_id"] == perm)]
        if not matches:
            raise BadRequest("no such open order")
        filled_at = self.gw.market.now()
        for o in matches:
            self.gw._dispatch(self.gw.broker.fill_before(o))
        self.gw.set_now(schedule.after_next_reset(filled_at))
        return {"filled": [{"order_id": o["order_id"], "perm_id": o["perm_id"],
                            "order_ref": o.get("order_ref", "")} for o in matches],
                "filled_at": filled_at.isoformat(), "now": self.gw.market.now().isoformat()}

    async def hold_fills(self, body: dict[str, Any]) -> Any:
        seconds = _num(body, "seconds", 60.0, 0.0, 86400.0)
        self.gw.broker.hold_fills_until = time.time() + seconds if seconds else 0.0
        if not seconds:
            self.gw.tick()
        return {"hold_fills": bool(seconds), "seconds": seconds}

    async def slow_orders(self, body: dict[str, Any]) -> Any:
        """{"seconds": S, "action": "BUY"|"SELL" (optional: only those orders),
        "release": true (optional: the orders held now go through at once)}."""
        action = body.get("action", "")
        if action not in ("", "BUY", "SELL"):
            raise BadRequest("'action' must be BUY or SELL")
        release = body.get("release", False)
        if not isinstance(release, bool):
            raise BadRequest("'release' must be true or false")
        self.gw.slow_orders = _num(body, "seconds", 1.0, 0.0, 600.0)
        self.gw.slow_orders_action = action
        if release:
            self.gw._slow_release.set()
            self.gw._slow_release = asyncio.Event()  # later orders are held again
        return {"slow_orders": self.gw.slow_orders, "action": action, "released": release}

    async def stall(self, body: dict[str, Any]) -> Any:
        """{"seconds": S}: requests are taken, nothing is sent for S seconds, then all of it
        in order (0 ends it now)."""
        seconds = _num(body, "seconds", 10.0, 0.0, 600.0)
        self.gw.stall(seconds)
        return {"stalled": bool(seconds), "seconds": seconds}

    async def fill_on_cancel(self, body: dict[str, Any]) -> Any:
        """{"count": N, "code": 10148|161}: the next N cancels or modifies arrive too late:
        the order fills first, then the cancel gets `code` (10148 default), a modify 104."""
        count = int(_num(body, "count", 1.0, 0.0, 10_000.0))
        code = body.get("code", 10148)
        if code not in (10148, 161):
            raise BadRequest("'code' must be 10148 or 161")
        self.gw.fill_on_cancel, self.gw.late_cancel_code = count, code
        return {"fill_on_cancel": count, "code": code}

    async def assign(self, body: dict[str, Any]) -> Any:
        """{"con_id": N, "qty": 1}: early assignment of a short option. With
        "first": "option" | "shares" and "gap": seconds, that leg's position update comes
        first and the other `gap` seconds later (IB books them separately)."""
        con_id = int(_num(body, "con_id", None, 1.0, 1e12))
        qty = int(_num(body, "qty", 1.0, 1.0, 10_000.0))
        first = body.get("first", "both")
        if first not in ("both", "option", "shares"):
            raise BadRequest("first must be both, option or shares")
        gap = _num(body, "gap", 1.0, 0.0, 3600.0)
        try:
            self.gw._dispatch(self.gw.broker.assign(con_id, qty, first))
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        if first != "both":
            self.gw._spawn(self._finish_assignment(gap))
        return {"assigned": qty, "con_id": con_id, "first": first}

    async def _finish_assignment(self, gap: float) -> None:
        await asyncio.sleep(gap)
        self.gw._dispatch(self.gw.broker.finish_assignment())

    async def partial_fills(self, body: dict[str, Any]) -> Any:
        """{"count": N, "slices": K}: the next N orders of quantity >= 2 fill in K slices,
        each with its own execDetails, commissionReport and orderStatus (0 ends it)."""
        count = int(_num(body, "count", 1.0, 0.0, 10_000.0))
        slices = int(_num(body, "slices", 2.0, 2.0, 100.0))
        self.gw.broker.partial_count, self.gw.broker.partial_slices = count, slices
        return {"partial_fills": count, "slices": slices}

    async def cancel_order(self, body: dict[str, Any]) -> Any:
        """Cancel an order as an operator would by hand in TWS (any client's order)."""
        perm, ref = body.get("perm_id"), body.get("order_ref")
        prefix = body.get("order_ref_prefix")
        if perm is None and ref is None and not prefix:
            raise BadRequest("give 'perm_id', 'order_ref' or 'order_ref_prefix'")
        matches = [o for o in self.gw.broker.open_orders()
                   if (perm is not None and o["perm_id"] == perm)
                   or (ref is not None and o.get("order_ref") == ref)
                   or (isinstance(prefix, str) and prefix
                       and o.get("order_ref", "").startswith(prefix))]
        if not matches:
            raise BadRequest("no such open order")
        for o in matches:
            self.gw._dispatch(self.gw.broker._cancel(o, "Order Canceled - reason: by hand"))
        return {"cancelled": [o["order_id"] for o in matches]}

    async def external_orders(self, body: dict[str, Any]) -> Any:
        """Market orders placed outside the API but bound to a client (as TWS binds an
        order entered by hand to the API client that owns its id): they fill at once and
        the client gets openOrder, orderStatus, execDetails and commissionReport as for
        its own. bench.memory streams a trade's fills this way."""
        client_id = int(_num(body, "client_id", None, 0, 2**31 - 1))
        orders = body.get("orders")
        if not isinstance(orders, list) or not orders or len(orders) > 500:
            raise BadRequest("'orders' must be a list of 1..500 orders")
        checked = []
        for o in orders:
            if not isinstance(o, dict) or o.get("action") not in ("BUY", "SELL") \
                    or not isinstance(o.get("order_ref"), str):
                raise BadRequest("each order needs 'action' (BUY or SELL) and 'order_ref'")
            con_id = int(_num(o, "con_id", None, 1, 2**31 - 1))
            qty = _num(o, "qty", 1.0, 1.0, 10_000.0)
            resolved = self.gw.broker.resolve({"con_id": con_id})
            if len(resolved) != 1:
                raise BadRequest(f"no contract with con_id {con_id}")
            # "account": one of --accounts (a hand order in another account of the
            # login); absent or empty, the login's first account.
            account = o.get("account") or self.gw.broker.account
            if account not in self.gw.broker.accounts:
                raise BadRequest(f"account {account!r} is not one the login manages")
            checked.append((resolved[0], o["action"], qty, o["order_ref"], account))
        broker = self.gw.broker
        ids = []
        broker.defer_saves = True
        try:
            self._place_external(client_id, checked, ids)
        finally:
            broker.defer_saves = False
            broker.save()
        return {"order_ids": ids}

    def _place_external(self, client_id: int, checked: list[tuple[Any, ...]],
                        ids: list[int]) -> None:
        broker = self.gw.broker
        for contract, action, qty, ref, account in checked:
            order = {
                "order_id": broker.next_order_id, "client_id": client_id, "contract": contract,
                "action": action, "qty": qty, "order_type": "MKT", "lmt_price": None,
                "aux_price": None, "tif": "DAY", "oca_group": "", "account": account,
                "order_ref": ref, "transmit": True, "parent_id": 0, "oca_type": 0,
            }
            ids.append(order["order_id"])
            self.gw._dispatch(broker.place(order, self.gw.in_outage))
            self.gw._dispatch(broker.match())  # each fills before the next is placed

    async def freeze(self, body: dict[str, Any]) -> Any:
        """The gateway hangs: sockets stay open, requests get no answer (0 ends it)."""
        seconds = _num(body, "seconds", 30.0, 0.0, 86400.0)
        self.gw.freeze_until = time.time() + seconds if seconds else 0.0
        return {"frozen": bool(seconds), "seconds": seconds}

    async def mute(self, body: dict[str, Any]) -> Any:
        """Market data stops flowing while requests are still answered (0 ends it)."""
        seconds = _num(body, "seconds", 30.0, 0.0, 86400.0)
        self.gw.mute_until = time.time() + seconds if seconds else 0.0
        return {"muted": bool(seconds), "seconds": seconds}

    async def refuse(self, body: dict[str, Any]) -> Any:
        seconds = _num(body, "seconds", 5.0, 0.0, 3600.0)
        self.gw.refuse(seconds)
        return {"refusing": True, "seconds": seconds}
