select
    organizers.organizer_id as organizer_id,
    organizers.organizer_name as organizer_name,
    sales.currency as currency,
    sum(sales.tickets) as tickets,
    sum(sales.gross_minor) as gross_minor,
    sum(sales.discounts_minor) as discounts_minor,
    sum(sales.fees_minor) as fees_minor,
    sum(sales.refunds_minor) as refunds_minor,
    sum(sales.adjustments_minor) as adjustments_minor,
    sum(sales.net_minor) as net_minor,
    {{ build_stamp() }} as built_at
from {{ ref('rpt_daily_sales') }} as sales
inner join {{ ref('dim_organizers') }} as organizers
    on organizers.organizer_id = sales.organizer_id
group by organizers.organizer_id, organizers.organizer_name, sales.currency
