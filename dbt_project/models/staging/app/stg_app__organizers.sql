select
    id as organizer_id,
    name as organizer_name,
    created_at
from {{ cdc_live('app', 'organizers') }}
