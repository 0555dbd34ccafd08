"""sessions: session records and the Jump Groups each account may use; console sign-ins

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("jump_client_id", sa.Integer(), nullable=True),
        sa.Column("jump_client_name", sa.String(length=200), nullable=False),
        sa.Column("jump_client_hostname", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=500), nullable=False),
        sa.Column("bytes_from_console", sa.BigInteger(), nullable=False),
        sa.Column("bytes_from_endpoint", sa.BigInteger(), nullable=False),
        sa.Column("recording_sha256", sa.String(length=64), nullable=True),
        sa.Column("recording_size", sa.BigInteger(), nullable=True),
        sa.Column("input_recorded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_username"), "sessions", ["username"])
    op.create_index(op.f("ix_sessions_jump_client_id"), "sessions", ["jump_client_id"])
    op.create_index(op.f("ix_sessions_started_at"), "sessions", ["started_at"])
    op.create_table(
        "account_jump_groups",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("jump_group", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_jump_groups_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "jump_group", name=op.f("pk_account_jump_groups")),
    )
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="web")
        )


def downgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("kind")
    op.drop_table("account_jump_groups")
    op.drop_index(op.f("ix_sessions_started_at"), table_name="sessions")
    op.drop_index(op.f("ix_sessions_jump_client_id"), table_name="sessions")
    op.drop_index(op.f("ix_sessions_username"), table_name="sessions")
    op.drop_table("sessions")
