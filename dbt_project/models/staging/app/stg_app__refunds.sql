select
    id as refund_id,
    order_id,
    payment_id,
    amount_minor,
    currency,
    reason,
    status as refund_status,
    provider_refund_id,
    created_at,
    _peerdb_synced_at as synced_at
from {{ cdc_live('app', 'refunds') }}
