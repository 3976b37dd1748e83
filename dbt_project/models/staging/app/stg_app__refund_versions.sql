{#- Every version of every refund the CDC relay wrote, deletions included (no FINAL): which
    refunds changed when. -#}
select
    id as refund_id,
    payment_id,
    order_id,
    _peerdb_synced_at as synced_at
from {{ source('app', 'refunds') }}
