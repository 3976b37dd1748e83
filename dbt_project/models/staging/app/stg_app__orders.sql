select
    id as order_id,
    user_id as buyer_id,
    event_id,
    status as order_status,
    currency,
    subtotal_minor,
    discount_minor,
    total_minor,
    promo_code_id,
    expires_at,
    paid_at,
    created_at,
    _peerdb_synced_at as synced_at
from {{ cdc_live('app', 'orders') }}
