select
    organizer_id,
    organizer_name,
    created_at,
    {{ build_stamp() }} as built_at
from {{ ref('stg_app__organizers') }}
