select
    payments.* except (order_id),
    payments.order_id as order_id,
    orders.event_id as event_id
from {{ ref('stg_app__payments') }} as payments
inner join {{ ref('stg_app__orders') }} as orders on orders.order_id = payments.order_id
