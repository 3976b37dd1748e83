{#- Every version of every refund the ingestion wrote (no FINAL): which changed when. -#}
select
    id as processor_refund_id,
    charge as charge_id,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_refunds') }}
