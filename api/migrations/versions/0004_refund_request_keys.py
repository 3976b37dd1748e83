"""a staff refund remembers the Idempotency-Key of the request that reserved it

A retry of a refund request whose first attempt died between reserving and sending finds the
reservation instead of reserving a second refund.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 05:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("refunds", sa.Column("request_key", sa.String(260), nullable=True))
    op.create_index(
        "uq_refunds_order_request_key",
        "refunds",
        ["order_id", "request_key"],
        unique=True,
        postgresql_where=sa.text("request_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_refunds_order_request_key", table_name="refunds")
    op.drop_column("refunds", "request_key")
