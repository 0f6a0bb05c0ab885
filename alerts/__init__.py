"""Alerts: the outbox, the webhook dispatcher and formats, the supervisord event listener."""
