"""Alembic's environment: run by tracker.migrations.upgrade on the connection it passes.

Only ever run through ``tracker.migrations`` (never with ``alembic`` on the command
line): the connection, already inside its transaction, is in ``config.attributes``.
"""

from alembic import context

# Through tracker.models, so that SQLModel.metadata holds the tables (for autogenerate and comparisons).
from tracker.models import SQLModel

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
