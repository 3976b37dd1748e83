select
    events.event_id as event_id,
    events.organizer_id as organizer_id,
    organizers.organizer_name as organizer_name,
    events.title as title,
    events.category as category,
    events.event_status as event_status,
    events.timezone as timezone,
    events.starts_at as starts_at,
    events.ends_at as ends_at,
    events.sales_start_at as sales_start_at,
    events.sales_end_at as sales_end_at,
    venues.venue_name as venue_name,
    venues.city as city,
    venues.country as country,
    {{ build_stamp() }} as built_at
from {{ ref('stg_app__events') }} as events
left join {{ ref('stg_app__organizers') }} as organizers
    on organizers.organizer_id = events.organizer_id
left join {{ ref('stg_app__venues') }} as venues on venues.venue_id = events.venue_id
