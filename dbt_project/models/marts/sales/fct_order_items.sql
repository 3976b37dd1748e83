-- depends_on: {{ ref('stg_app__ledger_entries') }}
-- depends_on: {{ ref('stg_app__orders') }}
{{ config(
    materialized='incremental',
    unique_key='order_item_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='order_item_id',
    partition_by='toYYYYMM(paid_at)'
) }}
{#- Paid order lines with their share of the order's discount, fees and refunds. Reads the
    allocation's table, which this run has already brought up to date. -#}
select
    order_item_id,
    order_id,
    event_id,
    ticket_type_id,
    currency,
    paid_at,
    quantity,
    gross_minor,
    discount_minor,
    fees_minor,
    refunds_minor,
    adjustments_minor,
    gross_minor - discount_minor - fees_minor - refunds_minor - adjustments_minor as net_minor,
    synced_at
from {{ ref('int_order_money_allocated_to_items') }}
{% if is_incremental() %}
where order_id in (
    select order_id from {{ ref('stg_app__orders') }}
    where synced_at > (select max(synced_at) from {{ this }}) - interval 1 hour
    union all
    select order_id from {{ ref('stg_app__ledger_entries') }}
    where synced_at > (select max(synced_at) from {{ this }}) - interval 1 hour
)
{% endif %}
