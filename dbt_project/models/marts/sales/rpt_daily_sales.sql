{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='(event_id, ticket_type_id, sales_day)'
) }}
{#- Per organizer, event, ticket type and day of payment: tickets and money in minor units.
    gross - discounts - fees - refunds - adjustments = net, to the minor unit.
    Incremental per event: an event with order items built since this table's last build is
    summed again whole, and its rows replace the event's (`event_id` is the replaced group). -#}
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
    sum(items.net_minor) as net_minor,
    {{ build_stamp() }} as built_at
from {{ ref('fct_order_items') }} as items
inner join {{ ref('dim_events') }} as events on events.event_id = items.event_id
{% if incremental_run() %}
where items.event_id in (
    select event_id from {{ ref('fct_order_items') }}
    where built_at > (select max(built_at) from {{ this }})
)
{% endif %}
group by events.organizer_id, items.event_id, items.ticket_type_id, sales_day, items.currency
