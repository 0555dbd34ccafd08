"""jump clients: the installers the site issued and the clients they installed

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jump_client_installers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("jump_group", sa.String(length=100), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("site_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("installed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jump_client_installers")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_jump_client_installers_token_hash")),
    )
    op.create_table(
        "jump_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("jump_group", sa.String(length=100), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("installer_id", sa.Integer(), nullable=True),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("fqdn", sa.String(length=255), nullable=False),
        sa.Column("os", sa.String(length=255), nullable=False),
        sa.Column("console_user", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("anchors", sa.Text(), nullable=False),
        sa.Column("statistics", sa.Text(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("wake_port", sa.Integer(), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("last_check_in_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("uninstall_requested_at", sa.DateTime(), nullable=True),
        sa.Column("upgrade_state", sa.String(length=16), nullable=False, server_default=""),
        sa.Column("upgrade_version", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("upgrade_started_at", sa.DateTime(), nullable=True),
        sa.Column("upgrade_finished_at", sa.DateTime(), nullable=True),
        sa.Column("upgrade_detail", sa.Text(), nullable=False, server_default=""),
        sa.Column("upgrade_first", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jump_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_jump_clients_client_id")),
    )
    op.create_index(op.f("ix_jump_clients_endpoint"), "jump_clients", ["endpoint"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jump_clients_endpoint"), table_name="jump_clients")
    op.drop_table("jump_clients")
    op.drop_table("jump_client_installers")
