"""The ZeroMQ protocol the engine and the dashboard share: envelope, server, client, CURVE keys."""
