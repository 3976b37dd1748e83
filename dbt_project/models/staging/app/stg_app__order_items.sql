select
    id as order_item_id,
    order_id,
    ticket_type_id,
    quantity,
    unit_price_minor,
    quantity * unit_price_minor as gross_minor,
    _peerdb_synced_at as synced_at
from {{ cdc_live('app', 'order_items') }}
