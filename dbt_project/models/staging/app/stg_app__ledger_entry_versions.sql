{#- Every version of every ledger entry the CDC relay wrote (no FINAL): which entries, and so
    which orders' money, changed when. -#}
select
    id as ledger_entry_id,
    order_id,
    _peerdb_synced_at as synced_at
from {{ source('app', 'ledger_entries') }}
