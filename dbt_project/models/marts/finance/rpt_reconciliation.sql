{{ config(
    materialized='incremental',
    unique_key='charge_key',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='charge_key'
) }}
{#- Every internal payment and refund beside the processor's balance transaction and payout:
    expected (our records and the contracted card pricing) against actual (the processor).
    Processor transactions of ours with no internal row are listed as `missing_internally`.
    Incremental, per charge: the rows of every charge noticed changed since the last run
    (`int_charges_changed`) are computed again and replace the charge's rows (`charge_key` is
    the replaced group, not a row key). -#}
{#- The contracted card pricing: basis points of the amount (rounded half up) plus a fixed fee. -#}
{%- set fee_basis_points = var('card_fee_basis_points', 290) -%}
{%- set fee_fixed = var('card_fee_fixed_minor', 30) -%}
{%- set keys -%}
    {{ charges_noticed_since_last_run() }}
{%- endset %}
with charges as (
    select charge_id, disputed from {{ ref('stg_stripe__charges') }}
    {% if incremental_run() %}where charge_id in ({{ keys }}){% endif %}
),

transactions as (
    select * from {{ ref('fct_balance_transactions') }}
    {% if incremental_run() %}where charge_id in ({{ keys }}){% endif %}
),

payments as (
    select * from {{ ref('fct_payments') }}
    where payment_status = 'succeeded'
    {% if incremental_run() %}and charge_key in ({{ keys }}){% endif %}
),

refunds as (
    select refunds.*, payments.charge_key as charge_key
    from {{ ref('fct_refunds') }} as refunds
    inner join (
        select payment_id, charge_key from {{ ref('fct_payments') }}
        {% if incremental_run() %}where charge_key in ({{ keys }}){% endif %}
    ) as payments on payments.payment_id = refunds.payment_id
    where refunds.refund_status = 'succeeded'
),

payment_rows as (
    select
        'payment' as item_type,
        payments.payment_id as internal_id,
        payments.order_id as order_id,
        payments.event_id as event_id,
        payments.provider_charge_id as processor_object_id,
        payments.charge_key as charge_key,
        payments.currency as currency,
        payments.amount_minor as expected_gross_minor,
        intDiv(payments.amount_minor * {{ fee_basis_points }} + 5000, 10000) + {{ fee_fixed }}
            as expected_fee_minor,
        payments.disputed or coalesce(charges.disputed, false) as disputed,
        payments.succeeded_at as occurred_at
    from payments
    left join charges on charges.charge_id = payments.provider_charge_id
),

refund_rows as (
    select
        'refund' as item_type,
        refunds.refund_id as internal_id,
        refunds.order_id as order_id,
        refunds.event_id as event_id,
        refunds.provider_refund_id as processor_object_id,
        refunds.charge_key as charge_key,
        refunds.currency as currency,
        -refunds.amount_minor as expected_gross_minor,
        toInt64(0) as expected_fee_minor,
        false as disputed,
        refunds.created_at as occurred_at
    from refunds
),

internal as (
    select * from payment_rows
    union all
    select * from refund_rows
),

rows as (
    -- Each internal row beside the processor transaction of its object, and the processor's
    -- transactions of charges and refunds carrying our order key that no internal row names
    -- (other applications' on the account are not ours to match). One full join, so that
    -- neither side is read twice; a side without a match reads as its columns' defaults.
    select
        internal.item_type != '' as ours,
        if(
            ours, internal.item_type,
            if(transactions.transaction_type = 'refund', 'refund', 'payment')
        ) as item_type,
        internal.internal_id as internal_id,
        internal.order_id as order_id,
        internal.event_id as event_id,
        if(ours, internal.processor_object_id, transactions.source_id) as processor_object_id,
        transactions.balance_transaction_id as balance_transaction_id,
        transactions.payout_id as payout_id,
        transactions.reporting_category as reporting_category,
        if(ours, internal.currency, transactions.currency) as currency,
        internal.expected_gross_minor as expected_gross_minor,
        transactions.amount_minor as actual_gross_minor,
        internal.expected_fee_minor as expected_fee_minor,
        transactions.fee_minor as actual_fee_minor,
        internal.expected_gross_minor - internal.expected_fee_minor as expected_net_minor,
        transactions.net_minor as actual_net_minor,
        internal.disputed as disputed,
        transactions.balance_transaction_id != '' as found_at_processor,
        if(ours, internal.occurred_at, transactions.created_at) as occurred_at,
        if(ours, internal.charge_key, assumeNotNull(transactions.charge_id)) as charge_key
    from internal
    full outer join transactions on transactions.source_id = internal.processor_object_id
    where ours
        or (transactions.is_ticketflow and transactions.source_type in ('charge', 'refund'))
)

select
    rows.* except (ours, charge_key),
    coalesce(actual_net_minor, 0) - expected_net_minor as variance_minor,
    multiIf(
        internal_id = 0, 'missing_internally',
        not found_at_processor, 'missing_at_processor',
        disputed, 'disputed',
        actual_gross_minor != expected_gross_minor
            or actual_fee_minor != expected_fee_minor, 'amount_mismatch',
        payout_id is null or payout_id = '', 'pending_payout',
        'matched'
    ) as status,
    rows.charge_key as charge_key,
    -- the incremental cursor: when the charge was last noticed changed
    noticed.noticed_at as charge_noticed_at,
    {{ build_stamp() }} as built_at
from rows
left join (
    select charge_key, built_at as noticed_at from {{ ref('int_charges_changed') }}
    {% if incremental_run() %}where charge_key in ({{ keys }}){% endif %}
) as noticed on noticed.charge_key = rows.charge_key
