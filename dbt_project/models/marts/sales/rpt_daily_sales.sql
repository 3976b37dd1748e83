{#- Per organizer, event, ticket type and day of payment: tickets and money in minor units.
    gross - discounts - fees - refunds - adjustments = net, to the minor unit. -#}
select
    events.organizer_id as organizer_id,
    items.event_id as event_id,
    items.ticket_type_id as ticket_type_id,
    toDate(items.paid_at) as sales_day,
    items.currency as currency,
    sum(items.quantity) as tickets,
    sum(items.gross_minor) as gross_minor,
    sum(items.discount_minor) as discounts_minor,
    sum(items.fees_minor) as fees_minor,
    sum(items.refunds_minor) as refunds_minor,
    sum(items.adjustments_minor) as adjustments_minor,
    sum(items.net_minor) as net_minor
from {{ ref('fct_order_items') }} as items
inner join {{ ref('dim_events') }} as events on events.event_id = items.event_id
group by events.organizer_id, items.event_id, items.ticket_type_id, sales_day, items.currency
