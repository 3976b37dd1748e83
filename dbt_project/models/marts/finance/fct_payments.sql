-- depends_on: {{ ref('stg_app__payment_versions') }}
{{ config(
    materialized='incremental',
    unique_key='payment_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='payment_id',
    partition_by='toYYYYMM(created_at)'
) }}
{#- Payment attempts with their order's event. Incremental: the payments the CDC relay wrote
    since the last run (less the lookback), read again by key. -#}
with payments as (
    select * from {{ ref('stg_app__payments') }}
    {% if incremental_run() %}
    where payment_id in (
        select payment_id from {{ ref('stg_app__payment_versions') }}
        where synced_at > {{ changed_since('synced_at') }}
    )
    {% endif %}
)

select
    payments.* except (order_id, synced_at),
    payments.order_id as order_id,
    orders.event_id as event_id,
    -- the processor charge its reconciliation hangs off (rpt_reconciliation)
    {{ charge_key('payments.provider_charge_id', 'payments.payment_id') }} as charge_key,
    payments.synced_at as synced_at,
    {{ build_stamp() }} as built_at
from payments
inner join {{ ref('stg_app__orders') }} as orders on orders.order_id = payments.order_id
{% if incremental_run() %}
where orders.order_id in (select order_id from payments)
{% endif %}
