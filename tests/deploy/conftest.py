"""Deployment checks: docker-compose.yml and the clients that use it."""

from tests.engine.conftest import sim, start_engine  # noqa: F401 - shared fixtures
