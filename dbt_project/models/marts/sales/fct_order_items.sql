-- depends_on: {{ ref('stg_app__ledger_entries') }}
{{ config(
    materialized='incremental',
    unique_key='order_item_id',
    incremental_strategy='delete+insert',
    order_by='order_item_id',
    partition_by='toYYYYMM(paid_at)'
) }}
{#- Paid order lines with their share of the order's discount, fees and refunds. -#}
select
    items.order_item_id as order_item_id,
    items.order_id as order_id,
    items.event_id as event_id,
    items.ticket_type_id as ticket_type_id,
    items.currency as currency,
    items.paid_at as paid_at,
    items.quantity as quantity,
    items.gross_minor as gross_minor,
    items.discount_minor as discount_minor,
    items.fees_minor as fees_minor,
    items.refunds_minor as refunds_minor,
    items.adjustments_minor as adjustments_minor,
    items.gross_minor - items.discount_minor - items.fees_minor - items.refunds_minor
        - items.adjustments_minor as net_minor,
    orders.synced_at as synced_at
from {{ ref('int_order_money_allocated_to_items') }} as items
inner join {{ ref('stg_app__orders') }} as orders on orders.order_id = items.order_id
{% if is_incremental() %}
where items.order_id in (
    select order_id from {{ ref('stg_app__orders') }}
    where synced_at > (select max(synced_at) from {{ this }}) - interval 1 hour
    union all
    select order_id from {{ ref('stg_app__ledger_entries') }}
    where synced_at > (select max(synced_at) from {{ this }}) - interval 1 hour
)
{% endif %}
