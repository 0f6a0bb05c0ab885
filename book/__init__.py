"""SQLite: schema, repositories returning model types, the dashboard's read models."""
