{#- Every version of every dispute the ingestion wrote (no FINAL): which changed when. -#}
select
    id as dispute_id,
    charge as charge_id,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_disputes') }}
