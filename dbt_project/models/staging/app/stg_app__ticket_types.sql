select
    id as ticket_type_id,
    event_id,
    name as ticket_type_name,
    price_minor,
    currency,
    capacity,
    max_per_order,
    created_at
from {{ cdc_live('app', 'ticket_types') }}
