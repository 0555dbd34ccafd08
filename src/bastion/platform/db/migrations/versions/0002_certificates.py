"""certificates: the certificate store (keys sealed by the key vault)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=False),
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("issuer", sa.String(length=1000), nullable=False),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("not_after", sa.DateTime(), nullable=True),
        sa.Column("key_type", sa.String(length=16), nullable=False),
        sa.Column("key_size", sa.Integer(), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("request_pem", sa.Text(), nullable=True),
        sa.Column("private_key", sa.LargeBinary(), nullable=True),
        sa.Column("pending_request", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_certificates_fingerprint")),
    )


def downgrade() -> None:
    op.drop_table("certificates")
