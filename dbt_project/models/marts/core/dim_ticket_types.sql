select
    ticket_types.ticket_type_id as ticket_type_id,
    ticket_types.event_id as event_id,
    events.organizer_id as organizer_id,
    ticket_types.ticket_type_name as ticket_type_name,
    ticket_types.price_minor as price_minor,
    ticket_types.currency as currency,
    ticket_types.capacity as capacity,
    {{ build_stamp() }} as built_at
from {{ ref('stg_app__ticket_types') }} as ticket_types
inner join {{ ref('stg_app__events') }} as events on events.event_id = ticket_types.event_id
