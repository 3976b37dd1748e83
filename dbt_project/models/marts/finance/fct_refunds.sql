select
    refunds.* except (order_id, currency),
    refunds.order_id as order_id,
    refunds.currency as currency,
    orders.event_id as event_id
from {{ ref('stg_app__refunds') }} as refunds
inner join {{ ref('stg_app__orders') }} as orders on orders.order_id = refunds.order_id
