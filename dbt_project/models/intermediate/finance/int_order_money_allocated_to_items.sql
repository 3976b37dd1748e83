-- depends_on: {{ ref('stg_app__order_versions') }}
-- depends_on: {{ ref('stg_app__ledger_entry_versions') }}
{{ config(
    materialized='incremental',
    unique_key='order_item_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='order_item_id'
) }}
{#- Each order's money (discount, processor fees, refunds, adjustments) spread over its
    items in proportion to their gross, in whole minor units: the largest item takes the
    rounding remainder, so the items of an order add up to the order exactly.
    One pass per source grouped by order (an order's items travel as an array, unrolled at
    the end), so no window sorts every item. A table, not a view: its tests and
    fct_order_items read it instead of computing it again. Incremental: the orders whose
    row or ledger entries were synced since the last run, less a lookback for CDC rows that
    arrive late, are computed again. -#}
{%- set only_changed_orders -%}
    {%- if incremental_run() %}
    where order_id in ({{ orders_changed_since(changed_since('synced_at')) }})
    {%- endif %}
{%- endset %}
with items as (
    select
        order_id,
        groupArray((order_item_id, ticket_type_id, quantity, gross_minor)) as lines,
        arraySum(line -> line.4, lines) as order_gross_minor,
        -- the largest item, the lowest id among equals
        arrayMax(line -> line.4, lines) as largest_gross_minor,
        arrayMin(line -> if(line.4 = largest_gross_minor, line.1, 9223372036854775807), lines)
            as largest_item_id
    from {{ ref('stg_app__order_items') }}
    {{- only_changed_orders }}
    group by order_id
),

orders as (
    select order_id, event_id, currency, discount_minor, paid_at, synced_at
    from {{ ref('stg_app__orders') }}
    {{- only_changed_orders }}
),

ledger as (
    select
        order_id,
        minIf(occurred_at, kind = 'sale') as first_paid_at,
        sumIf(-amount_minor, kind = 'fee') as fees_minor,
        sumIf(-amount_minor, kind = 'refund') as refunds_minor,
        sumIf(-amount_minor, kind = 'adjustment') as adjustments_minor
    from {{ ref('stg_app__ledger_entries') }}
    {{- only_changed_orders }}
    group by order_id
),

per_order as (
    select
        items.order_id as order_id,
        items.lines as lines,
        items.largest_item_id as largest_item_id,
        greatest(items.order_gross_minor, 1) as divisor,
        orders.event_id as event_id,
        orders.currency as currency,
        orders.synced_at as synced_at,
        coalesce(orders.paid_at, ledger.first_paid_at) as paid_at,
        orders.discount_minor as order_discount_minor,
        ledger.fees_minor as order_fees_minor,
        ledger.refunds_minor as order_refunds_minor,
        ledger.adjustments_minor as order_adjustments_minor,
        -- what the proportional shares, rounded down, leave over
        order_discount_minor
            - arraySum(line -> intDiv(order_discount_minor * line.4, divisor), lines)
            as discount_rest,
        order_fees_minor
            - arraySum(line -> intDiv(order_fees_minor * line.4, divisor), lines) as fees_rest,
        order_refunds_minor
            - arraySum(line -> intDiv(order_refunds_minor * line.4, divisor), lines)
            as refunds_rest,
        order_adjustments_minor
            - arraySum(line -> intDiv(order_adjustments_minor * line.4, divisor), lines)
            as adjustments_rest
    from items
    inner join orders on orders.order_id = items.order_id
    -- orders money moved for: paid ones, and any paid after their hold lapsed (refunded)
    inner join ledger on ledger.order_id = items.order_id
)

select
    line.1 as order_item_id,
    order_id,
    event_id,
    line.2 as ticket_type_id,
    currency,
    paid_at,
    line.3 as quantity,
    line.4 as gross_minor,
    intDiv(order_discount_minor * gross_minor, divisor)
        + if(order_item_id = largest_item_id, discount_rest, 0) as discount_minor,
    intDiv(order_fees_minor * gross_minor, divisor)
        + if(order_item_id = largest_item_id, fees_rest, 0) as fees_minor,
    intDiv(order_refunds_minor * gross_minor, divisor)
        + if(order_item_id = largest_item_id, refunds_rest, 0) as refunds_minor,
    intDiv(order_adjustments_minor * gross_minor, divisor)
        + if(order_item_id = largest_item_id, adjustments_rest, 0) as adjustments_minor,
    -- when the CDC relay wrote the order's latest version (the incremental cursor)
    synced_at,
    {{ build_stamp() }} as built_at
from per_order
array join lines as line
