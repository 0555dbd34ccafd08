"""failover: the change journal that a backup appliance pulls from, and its marks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "failover_journal",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=100), nullable=False),
        sa.Column("row_key", sa.Text(), nullable=False),
        sa.Column("operation", sa.String(length=1), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_failover_journal")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "failover_marks",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_failover_marks")),
    )


def downgrade() -> None:
    op.drop_table("failover_marks")
    op.drop_table("failover_journal")
