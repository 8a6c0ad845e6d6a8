"""Members of an organisation, known by the address they forward Meta's mails from.

Revision ID: 0004_members
Revises: 0003_verdicts
"""

from alembic import op
import sqlalchemy as sa

revision = "0004_members"
down_revision = "0003_verdicts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("country", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("address"),
    )


def downgrade() -> None:
    op.drop_table("member")
