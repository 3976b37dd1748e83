{#- Every version of every order the CDC relay wrote, deletions included (no FINAL): which
    orders changed when. -#}
select
    id as order_id,
    _peerdb_synced_at as synced_at
from {{ source('app', 'orders') }}
