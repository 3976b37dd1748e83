-- depends_on: {{ ref('stg_stripe__balance_transaction_versions') }}
-- depends_on: {{ ref('stg_stripe__refund_versions') }}
-- depends_on: {{ ref('stg_stripe__dispute_versions') }}
{{ config(
    materialized='incremental',
    unique_key='balance_transaction_id',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='balance_transaction_id',
    partition_by='toYYYYMM(created_at)'
) }}
{#- Every movement on the processor balance, with the payout that settled it and the
    TicketFlow payment, refund and order it belongs to. The processor object behind a
    transaction (its `source`) leads to a charge: a charge is itself, a refund and a dispute
    name theirs; the charge leads to our payment.
    Incremental: the transactions of every charge noticed changed since the last run
    (`int_charges_changed`), and new versions of those without one (payouts); each read again
    by key, with only the objects, payments and refunds of those charges. -#}
{%- set charges -%}
    {{ charges_noticed_since_last_run() }}
{%- endset %}
with transactions as (
    select * from {{ ref('stg_stripe__balance_transactions') }}
    {% if incremental_run() %}
    where balance_transaction_id in (
        -- Versions newer than the one this table holds (new transactions, or written again
        -- by a later ingestion; an older version not yet merged away is not news). The
        -- ingestion stamps every batch later than the last, so a transaction whose object
        -- leads to a charge has that charge noticed with it (int_charges_changed); the rest
        -- (payouts) have no charge to read.
        select versions.balance_transaction_id
        from {{ ref('stg_stripe__balance_transaction_versions') }} as versions
        left join (
            select balance_transaction_id, ingested_at from {{ this }}
            where {{ stamped_since_last_run('ingested_at') }}
        ) as held on held.balance_transaction_id = versions.balance_transaction_id
        where versions.ingested_at > {{ changed_since('ingested_at') }}
            and versions.ingested_at > ifNull(held.ingested_at, toDateTime64(0, 6, 'UTC'))
        union all
        -- known, of a changed charge (also when the object that names the charge came later)
        select balance_transaction_id from {{ this }}
        where source_id in (select object_id from {{ objects_of_charges(charges) }})
    )
    {% endif %}
),

processor_objects as (
    select charge_id as object_id, 'charge' as object_type, toNullable(charge_id) as charge_id
    from {{ ref('stg_stripe__charges') }}
    {% if incremental_run() %}where charge_id in ({{ charges }}){% endif %}
    union all
    select processor_refund_id, 'refund', charge_id from {{ ref('stg_stripe__refunds') }}
    {% if incremental_run() %}where charge_id in ({{ charges }}){% endif %}
    union all
    select dispute_id, 'dispute', charge_id from {{ ref('stg_stripe__disputes') }}
    {% if incremental_run() %}where charge_id in ({{ charges }}){% endif %}
),

ticketflow_charges as (
    -- charges TicketFlow made: they carry our order key
    select charge_id from {{ ref('stg_stripe__charges') }}
    where ticketflow_order_id is not null
    {% if incremental_run() %}and charge_id in ({{ charges }}){% endif %}
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
    {% if incremental_run() %}and provider_charge_id in ({{ charges }}){% endif %}
),

refunds as (
    select provider_refund_id, toNullable(refund_id) as refund_id
    from {{ ref('fct_refunds') }}
    where provider_refund_id is not null
    {% if incremental_run() %}
    and provider_refund_id in (
        select processor_refund_id from {{ ref('stg_stripe__refund_versions') }}
        where charge_id in ({{ charges }})
    )
    {% endif %}
),

noticed as (
    select charge_key, built_at as noticed_at from {{ ref('int_charges_changed') }}
    {% if incremental_run() %}where charge_key in ({{ charges }}){% endif %}
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
    toBool(ifNull(objects.charge_id, '') in (select charge_id from ticketflow_charges))
        as is_ticketflow,
    payments.payment_id as payment_id,
    refunds.refund_id as refund_id,
    payments.order_id as order_id,
    payments.event_id as event_id,
    -- the incremental cursors: when the ingestion wrote the transaction, and when its charge
    -- was last noticed changed
    transactions.ingested_at as ingested_at,
    noticed.noticed_at as charge_noticed_at,
    {{ build_stamp() }} as built_at
from transactions
left join processor_objects as objects on objects.object_id = transactions.source_id
left join payments on payments.charge_id = objects.charge_id
left join refunds on refunds.provider_refund_id = transactions.source_id
left join noticed on noticed.charge_key = objects.charge_id
