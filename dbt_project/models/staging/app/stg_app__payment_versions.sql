{#- Every version of every payment the CDC relay wrote, deletions included (no FINAL): which
    payments changed when. -#}
select
    id as payment_id,
    order_id,
    _peerdb_synced_at as synced_at
from {{ source('app', 'payments') }}
