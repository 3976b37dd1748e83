"""tickets in pending orders per ticket type, kept by triggers: checkout's count becomes O(1)

Checkout counted the live holds of a ticket type under its lock, joining every order item of
the type (paid ones too) to its order: 1 ms at 1,000 orders of one type, growing with sales
and with the holds, and every buyer of the type waited for it. `ticket_type_sales` now also
keeps `tickets_pending`, the tickets in pending orders whether or not their hold has lapsed:
sold + pending is an upper bound of what a ticket type has taken, read in O(1). An order
that fits under it fits; only one that does not (near a sell-out) makes checkout count the
live holds exactly.

The count moves in the transaction that moves the order: +quantity when items are written
into a pending order, -quantity when the order leaves `pending` (paid, expired, cancelled),
in the same deferred trigger that moves `tickets_sold`, so a payment moves its tickets from
pending to sold in one update at commit.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 04:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLDING = "('paid', 'partially_refunded')"


def upgrade() -> None:
    op.add_column(
        "ticket_type_sales",
        sa.Column("tickets_pending", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_check_constraint(
        op.f("ck_ticket_type_sales_pending_not_negative"),
        "ticket_type_sales",
        "tickets_pending >= 0",
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION ticket_type_sales_follow_order() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            sold integer := (NEW.status::text IN {HOLDING})::integer
                            - (OLD.status::text IN {HOLDING})::integer;
            pending integer := (NEW.status::text = 'pending')::integer
                               - (OLD.status::text = 'pending')::integer;
        BEGIN
            IF sold = 0 AND pending = 0 THEN
                RETURN NULL;
            END IF;
            -- Every ticket type of the order has its row: writing the items made it.
            UPDATE ticket_type_sales AS s
            SET tickets_sold = s.tickets_sold + sold * i.quantity,
                tickets_pending = s.tickets_pending + pending * i.quantity
            FROM (SELECT ticket_type_id, sum(quantity) AS quantity FROM order_items
                  WHERE order_id = NEW.id GROUP BY ticket_type_id) AS i
            WHERE s.ticket_type_id = i.ticket_type_id;
            RETURN NULL;
        END $$;

        CREATE FUNCTION ticket_type_sales_follow_items() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- (Items of paid orders cannot change at all: ticket_type_sales_refuse_late_items.)
            IF TG_OP IN ('UPDATE', 'DELETE')
               AND (SELECT status::text FROM orders WHERE id = OLD.order_id) = 'pending' THEN
                UPDATE ticket_type_sales SET tickets_pending = tickets_pending - OLD.quantity
                WHERE ticket_type_id = OLD.ticket_type_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                -- The row exists from the first item of its type on, which the order trigger
                -- relies on when the order is paid.
                INSERT INTO ticket_type_sales AS s (ticket_type_id, tickets_pending)
                SELECT NEW.ticket_type_id,
                       CASE WHEN o.status = 'pending' THEN NEW.quantity ELSE 0 END
                FROM orders o WHERE o.id = NEW.order_id
                ON CONFLICT (ticket_type_id)
                DO UPDATE SET tickets_pending = s.tickets_pending + EXCLUDED.tickets_pending;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER ticket_type_sales_follow_items
            AFTER INSERT OR UPDATE OR DELETE ON order_items
            FOR EACH ROW EXECUTE FUNCTION ticket_type_sales_follow_items();

        -- Every ticket type gets its row; what is pending now is counted once.
        INSERT INTO ticket_type_sales (ticket_type_id) SELECT id FROM ticket_types
        ON CONFLICT (ticket_type_id) DO NOTHING;
        UPDATE ticket_type_sales AS s SET tickets_pending = p.quantity
        FROM (SELECT i.ticket_type_id, sum(i.quantity) AS quantity FROM order_items i
              JOIN orders o ON o.id = i.order_id WHERE o.status = 'pending'
              GROUP BY i.ticket_type_id) AS p
        WHERE s.ticket_type_id = p.ticket_type_id;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DROP TRIGGER ticket_type_sales_follow_items ON order_items;
        DROP FUNCTION ticket_type_sales_follow_items();
        CREATE OR REPLACE FUNCTION ticket_type_sales_follow_order() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            was boolean := OLD.status::text IN {HOLDING};
            now_holding boolean := NEW.status::text IN {HOLDING};
        BEGIN
            IF was = now_holding THEN
                RETURN NULL;
            END IF;
            IF now_holding THEN
                INSERT INTO ticket_type_sales AS s (ticket_type_id, tickets_sold)
                SELECT ticket_type_id, sum(quantity) FROM order_items
                WHERE order_id = NEW.id GROUP BY ticket_type_id
                ON CONFLICT (ticket_type_id)
                DO UPDATE SET tickets_sold = s.tickets_sold + EXCLUDED.tickets_sold;
            ELSE
                UPDATE ticket_type_sales AS s SET tickets_sold = s.tickets_sold - i.quantity
                FROM (SELECT ticket_type_id, sum(quantity) AS quantity FROM order_items
                      WHERE order_id = NEW.id GROUP BY ticket_type_id) AS i
                WHERE s.ticket_type_id = i.ticket_type_id;
            END IF;
            RETURN NULL;
        END $$;
        """
    )
    op.drop_constraint(
        op.f("ck_ticket_type_sales_pending_not_negative"), "ticket_type_sales", type_="check"
    )
    op.drop_column("ticket_type_sales", "tickets_pending")
