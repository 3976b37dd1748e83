{#- One row per processor payout: what it settled, by reporting category, and the balance
    roll-forward per currency, payouts in creation order:
        opening (the previous payout's closing) + net of what it settled - its amount = closing.
    An automatic payout pays out exactly the net of the transactions it settles, so the
    closing balance stays 0 while every one of them is here; anything else is money the
    payouts do not explain. Amounts in minor units of `currency`. -#}
with payouts as (
    select * from {{ ref('stg_stripe__payouts') }}
),

settled as (
    -- What each payout settled, less its own withdrawal (which lists the payout as source).
    select
        payout_id,
        count() as settled_count,
        sum(amount_minor) as settled_gross_minor,
        sum(fee_minor) as settled_fee_minor,
        sum(net_minor) as settled_net_minor,
        countIf(reporting_category = 'charge') as charge_count,
        sumIf(net_minor, reporting_category = 'charge') as charge_net_minor,
        countIf(reporting_category = 'refund') as refund_count,
        sumIf(net_minor, reporting_category = 'refund') as refund_net_minor,
        countIf(reporting_category in ('dispute', 'dispute_reversal')) as dispute_count,
        sumIf(net_minor, reporting_category in ('dispute', 'dispute_reversal'))
            as dispute_net_minor,
        countIf(reporting_category not in ('charge', 'refund', 'dispute', 'dispute_reversal'))
            as other_count,
        sumIf(net_minor, reporting_category not in ('charge', 'refund', 'dispute', 'dispute_reversal'))
            as other_net_minor,
        countIf(is_ticketflow) as ticketflow_count,
        sumIf(net_minor, is_ticketflow) as ticketflow_net_minor
    from {{ ref('fct_balance_transactions') }}
    where payout_id is not null and ifNull(source_id, '') != payout_id
    group by payout_id
),

per_payout as (
    select
        payouts.payout_id as payout_id,
        payouts.currency as currency,
        payouts.amount_minor as amount_minor,
        payouts.payout_status as payout_status,
        payouts.is_automatic as is_automatic,
        payouts.reconciliation_status as reconciliation_status,
        payouts.created_at as created_at,
        payouts.arrival_at as arrival_at,
        payouts.balance_transaction_id as balance_transaction_id,
        length(arrayFilter(
            id -> id != ifNull(payouts.balance_transaction_id, ''),
            payouts.listed_balance_transaction_ids
        )) as listed_count,
        settled.settled_count as settled_count,
        settled.settled_gross_minor as settled_gross_minor,
        settled.settled_fee_minor as settled_fee_minor,
        settled.settled_net_minor as settled_net_minor,
        settled.charge_count as charge_count,
        settled.charge_net_minor as charge_net_minor,
        settled.refund_count as refund_count,
        settled.refund_net_minor as refund_net_minor,
        settled.dispute_count as dispute_count,
        settled.dispute_net_minor as dispute_net_minor,
        settled.other_count as other_count,
        settled.other_net_minor as other_net_minor,
        settled.ticketflow_count as ticketflow_count,
        settled.ticketflow_net_minor as ticketflow_net_minor
    from payouts
    left join settled on settled.payout_id = payouts.payout_id
),

rolled_forward as (
    select
        *,
        sum(settled_net_minor - amount_minor) over (
            partition by currency
            order by created_at, payout_id
            rows between unbounded preceding and current row
        ) as closing_balance_minor
    from per_payout
)

select
    payout_id,
    currency,
    created_at,
    arrival_at,
    payout_status,
    is_automatic,
    reconciliation_status,
    balance_transaction_id,
    closing_balance_minor - settled_net_minor + amount_minor as opening_balance_minor,
    settled_net_minor,
    amount_minor,
    closing_balance_minor,
    settled_count,
    listed_count,
    settled_gross_minor,
    settled_fee_minor,
    charge_count,
    charge_net_minor,
    refund_count,
    refund_net_minor,
    dispute_count,
    dispute_net_minor,
    other_count,
    other_net_minor,
    ticketflow_count,
    ticketflow_net_minor,
    multiIf(
        not is_automatic or reconciliation_status != 'completed', 'not_itemized',
        settled_count != listed_count, 'transactions_missing',
        settled_net_minor != amount_minor, 'out_of_balance',
        'balanced'
    ) as settlement_status,
    {{ build_stamp() }} as built_at
from rolled_forward
