{#- Every movement on the processor balance, with the payout that settled it and the
    TicketFlow payment, refund and order it belongs to. The processor object behind a
    transaction (its `source`) leads to a charge: a charge is itself, a refund and a dispute
    name theirs; the charge leads to our payment. -#}
with transactions as (
    select * from {{ ref('stg_stripe__balance_transactions') }}
),

charges as (
    select * from {{ ref('stg_stripe__charges') }}
),

processor_objects as (
    select charge_id as object_id, 'charge' as object_type, toNullable(charge_id) as charge_id
    from charges
    union all
    select processor_refund_id, 'refund', charge_id from {{ ref('stg_stripe__refunds') }}
    union all
    select dispute_id, 'dispute', charge_id from {{ ref('stg_stripe__disputes') }}
),

payments as (
    -- Nullable, so that a transaction that is not ours gets NULL rather than 0.
    select
        provider_charge_id as charge_id,
        toNullable(payment_id) as payment_id,
        toNullable(order_id) as order_id,
        toNullable(event_id) as event_id
    from {{ ref('fct_payments') }}
    where provider_charge_id is not null
),

refunds as (
    select provider_refund_id, toNullable(refund_id) as refund_id
    from {{ ref('fct_refunds') }}
    where provider_refund_id is not null
)

select
    transactions.balance_transaction_id as balance_transaction_id,
    transactions.payout_id as payout_id,
    transactions.transaction_type as transaction_type,
    transactions.reporting_category as reporting_category,
    transactions.source_id as source_id,
    if(objects.object_type = '', transactions.transaction_type, objects.object_type)
        as source_type,
    objects.charge_id as charge_id,
    transactions.currency as currency,
    transactions.amount_minor as amount_minor,
    transactions.fee_minor as fee_minor,
    transactions.net_minor as net_minor,
    transactions.transaction_status as transaction_status,
    transactions.available_on as available_on,
    transactions.created_at as created_at,
    toBool(ifNull(objects.charge_id, '') in (
        select charge_id from charges where ticketflow_order_id is not null
    )) as is_ticketflow,
    payments.payment_id as payment_id,
    refunds.refund_id as refund_id,
    payments.order_id as order_id,
    payments.event_id as event_id
from transactions
left join processor_objects as objects on objects.object_id = transactions.source_id
left join payments on payments.charge_id = objects.charge_id
left join refunds on refunds.provider_refund_id = transactions.source_id
