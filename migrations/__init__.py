"""Alembic migrations; ``server.migrate`` runs them from the installed package."""
