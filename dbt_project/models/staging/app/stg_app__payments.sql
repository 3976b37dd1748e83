select
    id as payment_id,
    order_id,
    provider,
    provider_payment_id,
    provider_charge_id,
    provider_balance_transaction_id,
    amount_minor,
    currency,
    status as payment_status,
    fee_minor,
    failure_code,
    disputed,
    created_at,
    succeeded_at,
    _peerdb_synced_at as synced_at
from {{ cdc_live('app', 'payments') }}
