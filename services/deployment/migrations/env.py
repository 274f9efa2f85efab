"""Alembic environment of the route tables: the connection comes from RouteStore (a config attribute).

The route tables share a database with the job tables, so they keep their own version table.
"""

from __future__ import annotations

from alembic import context

from services.deployment.routes import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
