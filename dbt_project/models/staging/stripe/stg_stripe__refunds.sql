select
    id as processor_refund_id,
    charge as charge_id,
    payment_intent as payment_intent_id,
    amount as amount_minor,
    currency,
    status as refund_status,
    balance_transaction as balance_transaction_id,
    created as created_at,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_refunds') }} final
