"""a function that refuses a checkout with an error of its own SQLSTATE

Checkout sends its locks, the statement that writes the order if it fits, and the COMMIT in
one round trip, so the locks are held for server time only. A refused order must then fail
the statement rather than return "no": the failed statement aborts the transaction, and the
COMMIT sent after it cannot commit anything (the Idempotency-Key answer written with the
order included). The SQLSTATEs (class TF, TicketFlow's) tell the API which refusal it was;
the detail carries what it needs to answer (the capacities as counted, for "sold out").

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 05:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION checkout_refuse(sqlstate text, message text, detail jsonb)
        RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message,
                                  DETAIL = coalesce(detail::text, '');
        END $$;
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION checkout_refuse(text, text, jsonb)")
