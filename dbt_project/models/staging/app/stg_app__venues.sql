select
    id as venue_id,
    organizer_id,
    name as venue_name,
    city,
    country
from {{ cdc_live('app', 'venues') }}
