"""jumpoints: a kind on Jump Clients and installers, the credential vault, SSH Jump Items

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _kind() -> sa.Column[str]:
    """Every client and installer made before Jumpoints is a Jump Client."""
    return sa.Column("kind", sa.String(length=16), nullable=False, server_default="jump_client")


def upgrade() -> None:
    for table in ("jump_client_installers", "jump_clients"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(_kind())
    op.create_table(
        "vault_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seal_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_credentials")),
        sa.UniqueConstraint("seal_id", name=op.f("uq_vault_credentials_seal_id")),
        sa.UniqueConstraint("name", name=op.f("uq_vault_credentials_name")),
    )
    op.create_table(
        "ssh_jump_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("jumpoint_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("credential_id", sa.Integer(), nullable=False),
        sa.Column("host_key", sa.Text(), nullable=False),
        sa.Column("jump_group", sa.String(length=100), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["jumpoint_id"],
            ["jump_clients.id"],
            name=op.f("fk_ssh_jump_items_jumpoint_id_jump_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["vault_credentials.id"],
            name=op.f("fk_ssh_jump_items_credential_id_vault_credentials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_jump_items")),
        sa.UniqueConstraint("name", name=op.f("uq_ssh_jump_items_name")),
    )
    op.create_index(op.f("ix_ssh_jump_items_jumpoint_id"), "ssh_jump_items", ["jumpoint_id"])
    op.create_index(op.f("ix_ssh_jump_items_credential_id"), "ssh_jump_items", ["credential_id"])


def downgrade() -> None:
    op.drop_table("ssh_jump_items")
    op.drop_table("vault_credentials")
    for table in ("jump_clients", "jump_client_installers"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("kind")
