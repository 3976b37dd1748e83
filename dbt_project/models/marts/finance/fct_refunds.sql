-- depends_on: {{ ref('stg_app__refund_versions') }}
{{ config(
    materialized='incremental',
    unique_key='refund_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='refund_id'
) }}
{#- Refunds with their order's event. Incremental: the refunds the CDC relay wrote since the
    last run (less the lookback), read again by key. -#}
with refunds as (
    select * from {{ ref('stg_app__refunds') }}
    {% if incremental_run() %}
    where refund_id in (
        select refund_id from {{ ref('stg_app__refund_versions') }}
        where synced_at > {{ changed_since('synced_at') }}
    )
    {% endif %}
)

select
    refunds.* except (order_id, currency, synced_at),
    refunds.order_id as order_id,
    refunds.currency as currency,
    orders.event_id as event_id,
    refunds.synced_at as synced_at,
    {{ build_stamp() }} as built_at
from refunds
inner join {{ ref('stg_app__orders') }} as orders on orders.order_id = refunds.order_id
{% if incremental_run() %}
where orders.order_id in (select order_id from refunds)
{% endif %}
