select
    id as payout_id,
    amount as amount_minor,
    currency,
    status as payout_status,
    automatic as is_automatic,
    reconciliation_status,
    arrival_date as arrival_at,
    created as created_at,
    balance_transaction as balance_transaction_id,
    balance_transaction_ids as listed_balance_transaction_ids
from {{ source('stripe', 'stripe_payouts') }} final
