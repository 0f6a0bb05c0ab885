"""The faults the control API injects on a gateway: link outages (1100/2110, then
1101/1102), broken data farms, stalls, logouts (a pending 2FA login survives a
restart), restarts and refused connections. Mixed into `Gateway` (ibsim/server.py)."""

from __future__ import annotations

import asyncio
import json
import time

from ibsim import codes, wire

FARM_MESSAGES = [(code, codes.text(code)) for code in (2104, 2106, 2158)]
# Farm codes by farm: (broken, OK) as IB sends them (TWS API "Message Codes").
FARM_CODES = {
    farm: ((broken, codes.text(broken)), (ok, codes.text(ok)))
    for farm, broken, ok in (("market", 2103, 2104), ("hmds", 2105, 2106),
                             ("secdef", 2157, 2158))
}
RESTORE_TEXT = {1101: codes.text(1101), 1102: codes.text(1102)}
LOST_TEXT = codes.text(1100)
# 2110 is a loss like 1100 (IB: "It will be restored automatically", by 1101/1102).
LOSS_TEXT = {1100: LOST_TEXT, 2110: codes.text(2110)}


class Faults:
    """Fault state and its transitions (a mixin of Gateway)."""

    @property
    def in_outage(self) -> bool:
        return time.time() < self.outage_until

    @property
    def stalled(self) -> bool:
        return time.time() < self.stall_until

    @property
    def logged_out(self) -> bool:
        return time.time() < self.logout_until

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
        if farm == "market" and not broken:
            self.refresh_lines()
        code, text = FARM_CODES[farm][0 if broken else 1]
        for s in self._clients(None):
            s.send(wire.error(-1, code, text))
        self.log.warning("{} farm {}", farm, "broken" if broken else "OK")

    def end_outage(self) -> None:
        code = self.outage_restore
        self.outage_until = 0.0
        self.refresh_lines()
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
