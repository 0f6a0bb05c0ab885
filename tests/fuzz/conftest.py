from tests.engine.conftest import sim, start_engine  # noqa: F401 - shared fixtures
