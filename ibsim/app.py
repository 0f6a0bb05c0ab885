"""Run a Gateway and its ControlServer on one asyncio loop."""

from __future__ import annotations

import asyncio
from typing import Any

from ibsim.control import ControlServer
from ibsim.server import Gateway


class Simulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 4002, control_port: int = 4010,
                 **gateway_args: Any) -> None:
        self.gateway = Gateway(host=host, port=port, **gateway_args)
        self.control = ControlServer(self.gateway, host=host, port=control_port)

    async def start(self) -> None:
        await self.gateway.start()
        await self.control.start()

    async def stop(self) -> None:
        await self.control.stop()
        await self.gateway.stop()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
