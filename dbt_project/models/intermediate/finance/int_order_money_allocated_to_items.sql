{#- Each order's money (discount, processor fees, refunds, adjustments) spread over its
    items in proportion to their gross, in whole minor units: the largest item takes the
    rounding remainder, so the items of an order add up to the order exactly. -#}
with items as (
    select * from {{ ref('stg_app__order_items') }}
),

orders as (
    select * from {{ ref('stg_app__orders') }}
),

ledger as (
    select
        order_id,
        minIf(occurred_at, kind = 'sale') as first_paid_at,
        sumIf(-amount_minor, kind = 'fee') as fees_minor,
        sumIf(-amount_minor, kind = 'refund') as refunds_minor,
        sumIf(-amount_minor, kind = 'adjustment') as adjustments_minor
    from {{ ref('stg_app__ledger_entries') }}
    group by order_id
),

shares as (
    select
        items.order_item_id as order_item_id,
        items.order_id as order_id,
        items.ticket_type_id as ticket_type_id,
        items.quantity as quantity,
        items.gross_minor as gross_minor,
        orders.event_id as event_id,
        orders.currency as currency,
        coalesce(orders.paid_at, ledger.first_paid_at) as paid_at,
        orders.discount_minor as order_discount_minor,
        ledger.fees_minor as order_fees_minor,
        ledger.refunds_minor as order_refunds_minor,
        ledger.adjustments_minor as order_adjustments_minor,
        sum(items.gross_minor) over (partition by items.order_id) as order_gross_minor,
        row_number() over (
            partition by items.order_id order by items.gross_minor desc, items.order_item_id
        ) as size_rank
    from items
    inner join orders on orders.order_id = items.order_id
    -- orders money moved for: paid ones, and any paid after their hold lapsed (refunded)
    inner join ledger on ledger.order_id = items.order_id
),

proportional as (
    select
        *,
        intDiv(order_discount_minor * gross_minor, greatest(order_gross_minor, 1)) as discount_share,
        intDiv(order_fees_minor * gross_minor, greatest(order_gross_minor, 1)) as fees_share,
        intDiv(order_refunds_minor * gross_minor, greatest(order_gross_minor, 1)) as refunds_share,
        intDiv(order_adjustments_minor * gross_minor, greatest(order_gross_minor, 1))
            as adjustments_share
    from shares
)

select
    order_item_id,
    order_id,
    event_id,
    ticket_type_id,
    currency,
    paid_at,
    quantity,
    gross_minor,
    discount_share + if(size_rank = 1,
        order_discount_minor - sum(discount_share) over (partition by order_id), 0)
        as discount_minor,
    fees_share + if(size_rank = 1,
        order_fees_minor - sum(fees_share) over (partition by order_id), 0) as fees_minor,
    refunds_share + if(size_rank = 1,
        order_refunds_minor - sum(refunds_share) over (partition by order_id), 0)
        as refunds_minor,
    adjustments_share + if(size_rank = 1,
        order_adjustments_minor - sum(adjustments_share) over (partition by order_id), 0)
        as adjustments_minor
from proportional
