"""The person's verdicts on mails, the templates learned from them, and what a held mail might be.

Revision ID: 0003_verdicts
Revises: 0002_account_authserv_id
"""

from alembic import op
import sqlalchemy as sa

revision = "0003_verdicts"
down_revision = "0002_account_authserv_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("guesses", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "verdict",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("message.id"), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("by", sa.String(), nullable=False),
        sa.Column("previous_category", sa.String(), nullable=False),
        sa.Column("previous_request_id", sa.Integer(), nullable=True),
        sa.Column("previous_reviewed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_verdict_message_id", "verdict", ["message_id"])
    op.create_table(
        "learnedtemplate",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("verdict_id", sa.Integer(), sa.ForeignKey("verdict.id"), nullable=False),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("message.id"), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("platform", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("words", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_learnedtemplate_verdict_id", "learnedtemplate", ["verdict_id"])
    op.create_index("ix_learnedtemplate_fingerprint", "learnedtemplate", ["fingerprint"])


def downgrade() -> None:
    op.drop_table("learnedtemplate")
    op.drop_table("verdict")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("uncertain")
        batch.drop_column("guesses")
