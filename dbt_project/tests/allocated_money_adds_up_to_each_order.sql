{#- The allocation loses and invents nothing: per order that money moved for, the items'
    shares add up to the order's discount and to its fees, refunds and adjustments (fct_orders
    sums those from the ledger on its own), to the minor unit. (An order with no items reads
    as 0 on the items' side, ClickHouse's default in a join.) Checks the orders either table's
    latest build wrote, or every order with `--vars '{test_every_row: true}'`
    (macros/tests.sql); marts_agree_with_the_ledger_per_event ties the money to the ledger. -#}
{#- In Dagster, a check of int_order_money_allocated_to_items -#}
{{ config(meta={'dagster': {'ref': {'name': 'int_order_money_allocated_to_items'}}}) }}
{%- set every_order = var('test_every_row', false) -%}
{%- set checked_orders -%}
    select order_id from {{ ref('int_order_money_allocated_to_items') }}
    where built_at = {{ latest_build_of(ref('int_order_money_allocated_to_items')) }}
    union all
    select order_id from {{ ref('fct_orders') }}
    where built_at = {{ latest_build_of(ref('fct_orders')) }}
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
    select order_id, discount_minor, fees_minor, refunds_minor, adjustments_minor
    from {{ ref('fct_orders') }}
    where (paid_minor != 0 or fees_minor != 0 or refunds_minor != 0 or adjustments_minor != 0)
    {% if not every_order %}and order_id in ({{ checked_orders }}){% endif %}
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
