"""A linear-time frame reader for ib_insync's Client (the pinned 0.9.86).

ib_insync's `Client._onSocketHasData` cuts each frame off the front of its buffer
(`self._data = self._data[msgEnd:]`), copying the rest of the buffer once per
message: quadratic in the bytes read at once. A client that falls behind reads
bigger chunks (asyncio reads up to 256 KiB), so each message costs more just when it
is late, and the backlog feeds itself: at a saturated feed that copy was a fifth of
the loop thread's time (bench.ticks). This reader walks the buffer by offset and
keeps the unread tail once per read; everything else is ib_insync's own code path,
in its order: tcpDataArrived, the byte and message counts, the handshake, the
nextValidId / managedAccounts snooping that makes the API ready, the decoder, and
tcpDataProcessed (which emits pendingTickersEvent).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import ib_insync
from ib_insync import Client

_LENGTH = struct.Struct(">I")


# The ib_insync release whose reader `read_frames` copies, line for line. Another release
# keeps its own reader: a copy of code that changed could mis-frame the wire.
READER_OF = "0.9.86"


def install(client: Client) -> bool:
    """Read `client`'s socket with `read_frames` instead of its own reader (True), or
    leave ib_insync's reader when this is not the release it was copied from (False)."""
    if ib_insync.__version__ != READER_OF or not hasattr(client, "_onSocketHasData"):
        return False
    client.conn.hasData -= client._onSocketHasData

    def on_data(data: bytes) -> None:
        read_frames(client, data)

    client.conn.hasData += on_data
    return True


def read_frames(client: Any, data: bytes) -> None:
    """ib_insync's Client._onSocketHasData (0.9.86), reading frames by offset."""
    debug = client._logger.isEnabledFor(logging.DEBUG)
    if client._tcpDataArrived:
        client._tcpDataArrived()
    buf = client._data + data if client._data else data
    client._data = buf
    client._numBytesRecv += len(data)
    pos, size = 0, len(buf)
    unpack = _LENGTH.unpack_from
    try:
        while size - pos > 4:
            end = pos + 4 + unpack(buf, pos)[0]
            if size < end:
                break  # the rest of this frame is still on its way
            msg = buf[pos + 4:end].decode(errors="backslashreplace")
            pos = end
            fields = msg.split("\0")
            fields.pop()  # pop off last empty element
            client._numMsgRecv += 1
            if debug:
                client._logger.debug("<<< %s", ",".join(fields))
            if not client._serverVersion and len(fields) == 2:
                # this concludes the handshake
                version, _conn_time = fields
                client._serverVersion = int(version)
                if client._serverVersion < client.MinClientVersion:
                    client._data = buf[pos:]
                    client._onSocketDisconnected("TWS/gateway version must be >= 972")
                    return
                client.decoder.serverVersion = client._serverVersion
                client.connState = Client.CONNECTED
                client.startApi()
                client.wrapper.connectAck()
                client._logger.info(f"Logged on to server version {client._serverVersion}")
            else:
                if not client._apiReady:
                    # snoop for nextValidId and managedAccounts response,
                    # when both are in then the client is ready
                    msg_id = int(fields[0])
                    if msg_id == 9:
                        _, _, valid_id = fields
                        client.updateReqId(int(valid_id))
                        client._hasReqId = True
                    elif msg_id == 15:
                        _, _, accts = fields
                        client._accounts = [a for a in accts.split(",") if a]
                    if client._hasReqId and client._accounts:
                        client._apiReady = True
                        client.apiStart.emit()
                # decode and handle the message
                client.decoder.interpret(fields)
            if client._data is not buf:
                break  # a handler reset the client (a disconnect): its buffer is b''
    finally:
        # What ib_insync's reader leaves: the unread tail, a frame read once even when
        # its handling raised (a reset client keeps its own empty buffer).
        if client._data is buf:
            client._data = buf[pos:] if pos else buf
    if client._tcpDataProcessed:
        client._tcpDataProcessed()
