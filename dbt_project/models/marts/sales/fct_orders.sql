-- depends_on: {{ ref('stg_app__order_versions') }}
-- depends_on: {{ ref('stg_app__ledger_entry_versions') }}
{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='order_id',
    partition_by='toYYYYMM(created_at)'
) }}
{#- One row per order in its latest state, with its money from the ledger. Incremental:
    orders synced since the last run, less a lookback for CDC rows that arrive late. -#}
with orders as (
    select * from {{ ref('stg_app__orders') }}
    {% if incremental_run() %}
    where order_id in ({{ orders_changed_since(changed_since('synced_at')) }})
    {% endif %}
),

ledger as (
    select
        order_id,
        sumIf(amount_minor, kind = 'sale') as paid_minor,
        sumIf(-amount_minor, kind = 'fee') as fees_minor,
        sumIf(-amount_minor, kind = 'refund') as refunds_minor,
        sumIf(-amount_minor, kind = 'adjustment') as adjustments_minor
    from {{ ref('stg_app__ledger_entries') }}
    {% if incremental_run() %}
    where ledger_entry_id in (
        select ledger_entry_id from {{ ref('stg_app__ledger_entry_versions') }}
        where order_id in (select order_id from orders)
    )
    {% endif %}
    group by order_id
)

select
    orders.order_id as order_id,
    orders.buyer_id as buyer_id,
    orders.event_id as event_id,
    orders.order_status as order_status,
    orders.currency as currency,
    orders.subtotal_minor as gross_minor,
    orders.discount_minor as discount_minor,
    orders.total_minor as total_minor,
    coalesce(ledger.paid_minor, 0) as paid_minor,
    coalesce(ledger.fees_minor, 0) as fees_minor,
    coalesce(ledger.refunds_minor, 0) as refunds_minor,
    coalesce(ledger.adjustments_minor, 0) as adjustments_minor,
    paid_minor - fees_minor - refunds_minor - adjustments_minor as net_minor,
    orders.created_at as created_at,
    orders.paid_at as paid_at,
    orders.synced_at as synced_at,
    {{ build_stamp() }} as built_at
from orders
left join ledger on ledger.order_id = orders.order_id
