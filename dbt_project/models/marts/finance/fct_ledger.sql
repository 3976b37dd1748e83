-- depends_on: {{ ref('stg_app__ledger_entry_versions') }}
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
    toDate(occurred_at) as occurred_on,
    {{ build_stamp() }} as built_at
from {{ ref('stg_app__ledger_entries') }}
{% if incremental_run() %}
where ledger_entry_id in (
    select ledger_entry_id from {{ ref('stg_app__ledger_entry_versions') }}
    where synced_at > {{ changed_since('synced_at') }}
)
{% endif %}
