{{ config(
    materialized='incremental',
    unique_key='ledger_entry_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='ledger_entry_id',
    partition_by='toYYYYMM(occurred_at)'
) }}
{#- Every monetary movement; append-only at the source, so new rows are all there is. -#}
select
    *,
    toDate(occurred_at) as occurred_on
from {{ ref('stg_app__ledger_entries') }}
{% if is_incremental() %}
where synced_at > (select max(synced_at) from {{ this }}) - interval 1 hour
{% endif %}
