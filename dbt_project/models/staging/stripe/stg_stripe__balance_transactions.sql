select
    id as balance_transaction_id,
    type as transaction_type,
    reporting_category,
    source as source_id,
    amount as amount_minor,
    fee as fee_minor,
    net as net_minor,
    currency,
    status as transaction_status,
    available_on,
    created as created_at,
    payout as payout_id,
    _ingested_at as ingested_at
from {{ source('stripe', 'stripe_balance_transactions') }} final
