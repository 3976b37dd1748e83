{#- The allocation loses and invents nothing: per order, the items' shares add up to the
    order's discount and to its fees, refunds and adjustments in the ledger, to the minor unit.
    (An order with no items reads as 0 on the items' side, ClickHouse's default in a join.)
    Checks the orders of the allocation's latest build, or every order with
    `--vars '{test_every_row: true}'` (macros/tests.sql). -#}
{%- set every_order = var('test_every_row', false) -%}
{%- set checked_orders -%}
    select order_id from {{ ref('int_order_money_allocated_to_items') }}
    where built_at = (select max(built_at) from {{ ref('int_order_money_allocated_to_items') }})
{%- endset %}
with items as (
    select
        order_id,
        sum(discount_minor) as discount_minor,
        sum(fees_minor) as fees_minor,
        sum(refunds_minor) as refunds_minor,
        sum(adjustments_minor) as adjustments_minor
    from {{ ref('int_order_money_allocated_to_items') }}
    {% if not every_order %}where order_id in ({{ checked_orders }}){% endif %}
    group by order_id
),

orders as (
    select
        ledger.order_id as order_id,
        any(orders.discount_minor) as discount_minor,
        sumIf(-ledger.amount_minor, ledger.kind = 'fee') as fees_minor,
        sumIf(-ledger.amount_minor, ledger.kind = 'refund') as refunds_minor,
        sumIf(-ledger.amount_minor, ledger.kind = 'adjustment') as adjustments_minor
    from {{ ref('stg_app__ledger_entries') }} as ledger
    inner join {{ ref('stg_app__orders') }} as orders on orders.order_id = ledger.order_id
    {% if not every_order %}
    where ledger.ledger_entry_id in (
        select ledger_entry_id from {{ ref('stg_app__ledger_entry_versions') }}
        where order_id in ({{ checked_orders }})
    )
        and orders.order_id in ({{ checked_orders }})
    {% endif %}
    group by ledger.order_id
)

select
    orders.order_id as order_id,
    orders.discount_minor as order_discount_minor,
    items.discount_minor as items_discount_minor,
    orders.fees_minor as order_fees_minor,
    items.fees_minor as items_fees_minor,
    orders.refunds_minor as order_refunds_minor,
    items.refunds_minor as items_refunds_minor,
    orders.adjustments_minor as order_adjustments_minor,
    items.adjustments_minor as items_adjustments_minor
from orders
left join items on items.order_id = orders.order_id
where items.discount_minor != orders.discount_minor
   or items.fees_minor != orders.fees_minor
   or items.refunds_minor != orders.refunds_minor
   or items.adjustments_minor != orders.adjustments_minor
