select
    organizer_id,
    organizer_name,
    created_at
from {{ ref('stg_app__organizers') }}
