select
    id as event_id,
    organizer_id,
    venue_id,
    title,
    category,
    status as event_status,
    timezone,
    starts_at,
    ends_at,
    sales_start_at,
    sales_end_at,
    published_at,
    created_at
from {{ cdc_live('app', 'events') }}
