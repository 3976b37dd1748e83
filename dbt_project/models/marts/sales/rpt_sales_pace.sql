{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='(event_id, ticket_type_id, days_before_event)'
) }}
{#- Cumulative tickets sold by days before the event, per event and ticket type, as a share
    of capacity: the curve forecasts are fitted to.
    Incremental per event: an event with order items built since this table's last build, or
    whose start or a ticket type's capacity differs from what the table holds, is computed
    again whole, and its rows replace the event's (`event_id` is the replaced group). -#}
{%- set changed_events -%}
    select event_id from {{ ref('fct_order_items') }}
    where built_at > (select max(built_at) from {{ this }})
    union distinct
    select types.event_id
    from {{ ref('dim_ticket_types') }} as types
    inner join {{ ref('dim_events') }} as events on events.event_id = types.event_id
    inner join (
        select distinct ticket_type_id, capacity, event_starts_at from {{ this }}
    ) as held on held.ticket_type_id = types.ticket_type_id
    where held.capacity != types.capacity or held.event_starts_at != events.starts_at
{%- endset %}
with daily as (
    select
        items.event_id as event_id,
        items.ticket_type_id as ticket_type_id,
        dateDiff('day', toDate(items.paid_at), toDate(events.starts_at)) as days_before_event,
        sum(items.quantity) as tickets
    from {{ ref('fct_order_items') }} as items
    inner join {{ ref('dim_events') }} as events on events.event_id = items.event_id
    {% if incremental_run() %}where items.event_id in ({{ changed_events }}){% endif %}
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
    round(100 * cumulative_tickets / nullIf(types.capacity, 0), 2) as percent_of_capacity,
    types.capacity as capacity,
    events.starts_at as event_starts_at,
    {{ build_stamp() }} as built_at
from daily
inner join {{ ref('dim_ticket_types') }} as types on types.ticket_type_id = daily.ticket_type_id
inner join {{ ref('dim_events') }} as events on events.event_id = daily.event_id
