"""Alembic migrations of the job store; ``offload db upgrade`` applies them."""
