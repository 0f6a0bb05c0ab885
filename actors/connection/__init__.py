"""The Connection actor: the only package that imports ib_insync (README "Layout")."""

from actors.connection.actor import Connection
from actors.connection.loop import BrokerCallError

__all__ = ["BrokerCallError", "Connection"]
