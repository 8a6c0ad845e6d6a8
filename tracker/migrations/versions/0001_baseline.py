"""Baseline: the schema of the tracker before it had migrations (version 0.1.0).

Databases made by that version have these tables and no alembic_version table:
they are stamped with this revision and upgraded from here. Frozen: never edit a
revision that has shipped; add a new one instead.

Revision ID: 0001_baseline
Revises:
"""

from alembic import op
import sqlalchemy as sa

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('host', sa.String(), nullable=True),
    sa.Column('username', sa.String(), nullable=True),
    sa.Column('last_success_at', sa.DateTime(), nullable=True),
    sa.Column('last_error_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('login_refused', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_account_name'), 'account', ['name'], unique=True)
    op.create_table('folderlock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('holder', sa.String(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(), nullable=False),
    sa.Column('platform', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('country', sa.String(), nullable=True),
    sa.Column('region', sa.String(), nullable=True),
    sa.Column('submitted', sa.Date(), nullable=True),
    sa.Column('notes', sa.String(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('address', 'platform', 'kind')
    )
    op.create_index(op.f('ix_request_address'), 'request', ['address'], unique=False)
    op.create_table('checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('folder', sa.String(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('last_uid', sa.Integer(), nullable=False),
    sa.Column('highestmodseq', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'folder')
    )
    op.create_index(op.f('ix_checkpoint_account_id'), 'checkpoint', ['account_id'], unique=False)
    op.create_table('complaint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('authority', sa.String(), nullable=False),
    sa.Column('filed', sa.Date(), nullable=False),
    sa.Column('reference', sa.String(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['request.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_complaint_request_id'), 'complaint', ['request_id'], unique=False)
    op.create_table('message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('folder', sa.String(), nullable=True),
    sa.Column('uidvalidity', sa.Integer(), nullable=True),
    sa.Column('uid', sa.Integer(), nullable=True),
    sa.Column('source_path', sa.String(), nullable=True),
    sa.Column('dedupe_id', sa.String(), nullable=False),
    sa.Column('content_key', sa.String(), nullable=False),
    sa.Column('sha256', sa.String(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(), nullable=False),
    sa.Column('sender', sa.String(), nullable=False),
    sa.Column('sender_name', sa.String(), nullable=False),
    sa.Column('recipient', sa.String(), nullable=True),
    sa.Column('mail_date', sa.DateTime(), nullable=True),
    sa.Column('category', sa.String(), nullable=False),
    sa.Column('platform', sa.String(), nullable=True),
    sa.Column('kind', sa.String(), nullable=True),
    sa.Column('rule', sa.String(), nullable=True),
    sa.Column('authenticated', sa.Boolean(), nullable=True),
    sa.Column('authenticity', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('reference', sa.String(), nullable=True),
    sa.Column('otp', sa.String(), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.Column('raw_path', sa.String(), nullable=True),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('reviewed', sa.Boolean(), nullable=False),
    sa.Column('seen_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['request.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'folder', 'uidvalidity', 'uid', name='uq_message_location'),
    sa.UniqueConstraint('dedupe_id', 'content_key', name='uq_message_content')
    )
    op.create_index(op.f('ix_message_account_id'), 'message', ['account_id'], unique=False)
    op.create_index(op.f('ix_message_category'), 'message', ['category'], unique=False)
    op.create_index(op.f('ix_message_mail_date'), 'message', ['mail_date'], unique=False)
    op.create_index(op.f('ix_message_request_id'), 'message', ['request_id'], unique=False)
    op.create_index(op.f('ix_message_sha256'), 'message', ['sha256'], unique=False)
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(), nullable=False),
    sa.Column('body', sa.String(), nullable=False),
    sa.Column('contains_code', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('delivered_channels', sa.String(), nullable=False),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['message_id'], ['message.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['request.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(), nullable=False),
    sa.Column('detail', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['message.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['request.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'message_id')
    )
    op.create_index(op.f('ix_event_request_id'), 'event', ['request_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_event_request_id'), table_name='event')
    op.drop_table('event')
    op.drop_table('alert')
    op.drop_index(op.f('ix_message_sha256'), table_name='message')
    op.drop_index(op.f('ix_message_request_id'), table_name='message')
    op.drop_index(op.f('ix_message_mail_date'), table_name='message')
    op.drop_index(op.f('ix_message_category'), table_name='message')
    op.drop_index(op.f('ix_message_account_id'), table_name='message')
    op.drop_table('message')
    op.drop_index(op.f('ix_complaint_request_id'), table_name='complaint')
    op.drop_table('complaint')
    op.drop_index(op.f('ix_checkpoint_account_id'), table_name='checkpoint')
    op.drop_table('checkpoint')
    op.drop_index(op.f('ix_request_address'), table_name='request')
    op.drop_table('request')
    op.drop_table('folderlock')
    op.drop_index(op.f('ix_account_name'), table_name='account')
    op.drop_table('account')
