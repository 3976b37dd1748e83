"""a paid, expired or refunded order takes its ticket types' count rows in id order

`ticket_type_sales_follow_order` (deferred to the commit) updated the `ticket_type_sales`
rows of an order's ticket types in whatever order the plan read them, so a payment for
several ticket types and the hold sweeper (which expires many orders at once) could each hold
a row the other wanted: a deadlock, and a 500 for a buyer already charged. Now each order
locks its rows in ticket type id order first, as the sweeper does for its whole batch
(`api.services.orders.expire_holds`): every transaction takes them in one order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 07:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLDING = "('paid', 'partially_refunded')"
LOCK_IN_ORDER = """
            PERFORM 1 FROM ticket_type_sales
            WHERE ticket_type_id IN (SELECT ticket_type_id FROM order_items
                                     WHERE order_id = NEW.id)
            ORDER BY ticket_type_id
            FOR UPDATE;"""


def _follow_order(lock_in_order: bool) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION ticket_type_sales_follow_order() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            sold integer := (NEW.status::text IN {HOLDING})::integer
                            - (OLD.status::text IN {HOLDING})::integer;
            released integer := (OLD.status::text = 'pending')::integer
                                - (NEW.status::text = 'pending')::integer;
        BEGIN
            IF sold = 0 AND released = 0 THEN
                RETURN NULL;
            END IF;{LOCK_IN_ORDER if lock_in_order else ""}
            UPDATE ticket_type_sales AS s
            SET tickets_sold = s.tickets_sold + sold * i.quantity,
                tickets_released = s.tickets_released + released * i.quantity
            FROM (SELECT ticket_type_id, sum(quantity) AS quantity FROM order_items
                  WHERE order_id = NEW.id GROUP BY ticket_type_id) AS i
            WHERE s.ticket_type_id = i.ticket_type_id;
            RETURN NULL;
        END $$;
        """


def upgrade() -> None:
    op.execute(_follow_order(lock_in_order=True))


def downgrade() -> None:
    op.execute(_follow_order(lock_in_order=False))
