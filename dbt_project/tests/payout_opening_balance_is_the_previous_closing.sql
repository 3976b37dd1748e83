{#- The payout roll-forward carries over: each payout opens with the closing balance of the
    payout before it in the same currency (the first one opens at 0). -#}
select *
from (
    select
        payout_id,
        currency,
        opening_balance_minor,
        lagInFrame(closing_balance_minor, 1, toInt64(0)) over (
            partition by currency
            order by created_at, payout_id
            rows between unbounded preceding and current row
        ) as previous_closing_minor
    from {{ ref('rpt_payout_reconciliation') }}
)
where opening_balance_minor != previous_closing_minor
