"""IMAP numbers (UID, UIDVALIDITY, MODSEQ) as 64-bit integers on PostgreSQL.

UIDs and UIDVALIDITY go up to 2**32 - 1 and MODSEQ to 2**63 - 1; PostgreSQL's
INTEGER stops at 2**31 - 1. SQLite's INTEGER is 64-bit already: nothing to do there.

Revision ID: 0005_imap_numbers_64_bit
Revises: 0004_members
"""

from alembic import op
import sqlalchemy as sa

revision = "0005_imap_numbers_64_bit"
down_revision = "0004_members"
branch_labels = None
depends_on = None

COLUMNS = (("message", "uid"), ("message", "uidvalidity"), ("checkpoint", "uidvalidity"),
           ("checkpoint", "last_uid"), ("checkpoint", "highestmodseq"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
