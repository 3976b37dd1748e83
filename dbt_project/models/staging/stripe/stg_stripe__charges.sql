select
    id as charge_id,
    payment_intent as payment_intent_id,
    amount as amount_minor,
    amount_refunded as amount_refunded_minor,
    currency,
    status as charge_status,
    balance_transaction as balance_transaction_id,
    disputed,
    metadata_order_id as ticketflow_order_id,  -- NULL: not made by TicketFlow
    created as created_at,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_charges') }} final
