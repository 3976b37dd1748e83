select
    id as dispute_id,
    charge as charge_id,
    payment_intent as payment_intent_id,
    amount as amount_minor,
    currency,
    status as dispute_status,
    reason,
    balance_transaction_ids,
    created as created_at,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_disputes') }} final
