"""refunds made by the system or at the processor have no person behind them

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("refunds", "created_by", existing_type=sa.BigInteger(), nullable=True)


def downgrade() -> None:
    op.alter_column("refunds", "created_by", existing_type=sa.BigInteger(), nullable=False)
