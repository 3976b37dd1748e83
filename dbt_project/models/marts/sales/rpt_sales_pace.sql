{#- Cumulative tickets sold by days before the event, per event and ticket type, as a share
    of capacity: the curve forecasts are fitted to. -#}
with daily as (
    select
        items.event_id as event_id,
        items.ticket_type_id as ticket_type_id,
        dateDiff('day', toDate(items.paid_at), toDate(events.starts_at)) as days_before_event,
        sum(items.quantity) as tickets
    from {{ ref('fct_order_items') }} as items
    inner join {{ ref('dim_events') }} as events on events.event_id = items.event_id
    group by items.event_id, items.ticket_type_id, days_before_event
)

select
    daily.event_id as event_id,
    daily.ticket_type_id as ticket_type_id,
    daily.days_before_event as days_before_event,
    daily.tickets as tickets,
    sum(daily.tickets) over (
        partition by daily.event_id, daily.ticket_type_id
        order by daily.days_before_event desc
        rows between unbounded preceding and current row
    ) as cumulative_tickets,
    round(100 * cumulative_tickets / nullIf(types.capacity, 0), 2) as percent_of_capacity
from daily
inner join {{ ref('dim_ticket_types') }} as types on types.ticket_type_id = daily.ticket_type_id
