select
    id as ledger_entry_id,
    order_id,
    event_id,
    organizer_id,
    payment_id,
    refund_id,
    kind,
    amount_minor,
    currency,
    occurred_at,
    _peerdb_synced_at as synced_at
from {{ cdc_live('app', 'ledger_entries') }}
