{#- The books balance: per event and currency, the marts' money equals the source ledger's
    to the minor unit. -#}
{#- In Dagster, a check of rpt_daily_sales -#}
{{ config(meta={'dagster': {'ref': {'name': 'rpt_daily_sales'}}}) }}
with marts as (
    select
        event_id,
        currency,
        sum(gross_minor - discounts_minor) as paid_minor,
        sum(fees_minor) as fees_minor,
        sum(refunds_minor) as refunds_minor,
        sum(net_minor) as net_minor
    from {{ ref('rpt_daily_sales') }}
    group by event_id, currency
),

ledger as (
    select
        event_id,
        currency,
        sumIf(amount_minor, kind = 'sale') as paid_minor,
        sumIf(-amount_minor, kind = 'fee') as fees_minor,
        sumIf(-amount_minor, kind = 'refund') as refunds_minor,
        sum(amount_minor) as net_minor
    from {{ ref('stg_app__ledger_entries') }}
    group by event_id, currency
)

select *
from ledger
full outer join marts using (event_id, currency)
where ledger.paid_minor != marts.paid_minor
   or ledger.fees_minor != marts.fees_minor
   or ledger.refunds_minor != marts.refunds_minor
   or ledger.net_minor != marts.net_minor
