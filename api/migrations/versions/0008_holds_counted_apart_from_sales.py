"""held tickets are counted in a row of their own, which only checkout writes

With `tickets_pending` in the `ticket_type_sales` row (0006), every checkout wrote the row
every payment of the same ticket type also writes (at its commit), so the two queued on each
other: under load a payment's commit waited 7.8 ms on average for the row, and the checkout
that came next waited, holding the ticket type's lock, for that payment's commit.

Now the count of what is pending is the difference of two counts that grow apart:
- `ticket_type_holds.tickets_held`: tickets written into pending orders (checkout, which
  holds the ticket type's lock anyway, so no one waits for this row who did not already);
- `ticket_type_sales.tickets_released`: tickets of orders that left `pending` (paid,
  expired or cancelled), moved at commit with `tickets_sold` in the one update a payment
  already made.
held - released = the tickets in pending orders, as `tickets_pending` was. Both rows are
made with the ticket type (a trigger), so the counting triggers only ever update.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 05:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLDING = "('paid', 'partially_refunded')"


def upgrade() -> None:
    op.create_table(
        "ticket_type_holds",
        sa.Column("ticket_type_id", sa.BigInteger(), nullable=False),
        sa.Column("tickets_held", sa.BigInteger(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(
            ["ticket_type_id"],
            ["ticket_types.id"],
            name=op.f("fk_ticket_type_holds_ticket_type_id_ticket_types"),
        ),
        sa.PrimaryKeyConstraint("ticket_type_id", name=op.f("pk_ticket_type_holds")),
        sa.CheckConstraint("tickets_held >= 0", name=op.f("ck_ticket_type_holds_not_negative")),
    )
    op.add_column(
        "ticket_type_sales",
        sa.Column("tickets_released", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_check_constraint(
        op.f("ck_ticket_type_sales_released_not_negative"),
        "ticket_type_sales",
        "tickets_released >= 0",
    )
    op.execute(
        f"""
        INSERT INTO ticket_type_sales (ticket_type_id) SELECT id FROM ticket_types
        ON CONFLICT (ticket_type_id) DO NOTHING;
        INSERT INTO ticket_type_holds (ticket_type_id, tickets_held)
        SELECT ticket_type_id, tickets_pending FROM ticket_type_sales;

        CREATE FUNCTION ticket_type_counts_start() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO ticket_type_sales (ticket_type_id) VALUES (NEW.id);
            INSERT INTO ticket_type_holds (ticket_type_id) VALUES (NEW.id);
            RETURN NULL;
        END $$;
        CREATE TRIGGER ticket_type_counts_start AFTER INSERT ON ticket_types
            FOR EACH ROW EXECUTE FUNCTION ticket_type_counts_start();

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
            END IF;
            UPDATE ticket_type_sales AS s
            SET tickets_sold = s.tickets_sold + sold * i.quantity,
                tickets_released = s.tickets_released + released * i.quantity
            FROM (SELECT ticket_type_id, sum(quantity) AS quantity FROM order_items
                  WHERE order_id = NEW.id GROUP BY ticket_type_id) AS i
            WHERE s.ticket_type_id = i.ticket_type_id;
            RETURN NULL;
        END $$;

        DROP TRIGGER ticket_type_sales_follow_items ON order_items;
        DROP FUNCTION ticket_type_sales_follow_items();
        CREATE FUNCTION ticket_type_holds_follow_items() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- (Items of paid orders cannot change at all: ticket_type_sales_refuse_late_items.)
            IF TG_OP IN ('UPDATE', 'DELETE')
               AND (SELECT status::text FROM orders WHERE id = OLD.order_id) = 'pending' THEN
                UPDATE ticket_type_holds SET tickets_held = tickets_held - OLD.quantity
                WHERE ticket_type_id = OLD.ticket_type_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE')
               AND (SELECT status::text FROM orders WHERE id = NEW.order_id) = 'pending' THEN
                UPDATE ticket_type_holds SET tickets_held = tickets_held + NEW.quantity
                WHERE ticket_type_id = NEW.ticket_type_id;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER ticket_type_holds_follow_items
            AFTER INSERT OR UPDATE OR DELETE ON order_items
            FOR EACH ROW EXECUTE FUNCTION ticket_type_holds_follow_items();
        """
    )
    op.drop_constraint(
        op.f("ck_ticket_type_sales_pending_not_negative"), "ticket_type_sales", type_="check"
    )
    op.drop_column("ticket_type_sales", "tickets_pending")


def downgrade() -> None:
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
        UPDATE ticket_type_sales AS s SET tickets_pending = h.tickets_held - s.tickets_released
        FROM ticket_type_holds h WHERE h.ticket_type_id = s.ticket_type_id;

        DROP TRIGGER ticket_type_counts_start ON ticket_types;
        DROP FUNCTION ticket_type_counts_start();
        DROP TRIGGER ticket_type_holds_follow_items ON order_items;
        DROP FUNCTION ticket_type_holds_follow_items();

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
            UPDATE ticket_type_sales AS s
            SET tickets_sold = s.tickets_sold + sold * i.quantity,
                tickets_pending = s.tickets_pending + pending * i.quantity
            FROM (SELECT ticket_type_id, sum(quantity) AS quantity FROM order_items
                  WHERE order_id = NEW.id GROUP BY ticket_type_id) AS i
            WHERE s.ticket_type_id = i.ticket_type_id;
            RETURN NULL;
        END $$;

        CREATE FUNCTION ticket_type_sales_follow_items() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE')
               AND (SELECT status::text FROM orders WHERE id = OLD.order_id) = 'pending' THEN
                UPDATE ticket_type_sales SET tickets_pending = tickets_pending - OLD.quantity
                WHERE ticket_type_id = OLD.ticket_type_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
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
        """
    )
    op.drop_constraint(
        op.f("ck_ticket_type_sales_released_not_negative"), "ticket_type_sales", type_="check"
    )
    op.drop_column("ticket_type_sales", "tickets_released")
    op.drop_table("ticket_type_holds")
