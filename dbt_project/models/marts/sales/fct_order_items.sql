-- depends_on: {{ ref('stg_app__order_versions') }}
-- depends_on: {{ ref('stg_app__ledger_entry_versions') }}
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
    synced_at,
    {{ build_stamp() }} as built_at
from {{ ref('int_order_money_allocated_to_items') }}
{% if incremental_run() %}
where order_id in ({{ orders_changed_since(changed_since('synced_at')) }})
{% endif %}
