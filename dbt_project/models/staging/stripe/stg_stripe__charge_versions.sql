{#- Every version of every charge the ingestion wrote (no FINAL): which changed when. -#}
select
    id as charge_id,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_charges') }}
