{#- Every version of every balance transaction the ingestion wrote (no FINAL): which changed
    when (a transaction is written again when a payout settles it). -#}
select
    id as balance_transaction_id,
    source as source_id,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_balance_transactions') }}
