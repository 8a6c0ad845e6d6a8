"""The authserv-id of the account's own mail server, learned on the first sync.

Revision ID: 0002_account_authserv_id
Revises: 0001_baseline
"""

from alembic import op
import sqlalchemy as sa

revision = "0002_account_authserv_id"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("account", sa.Column("authserv_id", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.drop_column("authserv_id")
