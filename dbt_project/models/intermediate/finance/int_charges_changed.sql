{{ config(
    materialized='incremental',
    unique_key='charge_key',
    incremental_strategy='delete+insert',
    settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
    query_settings={'lightweight_delete_mode': 'lightweight_update'},
    order_by='charge_key'
) }}
{#- When anything of each processor charge last changed: the CDC relay's newest write of a
    TicketFlow payment or refund of it (`synced_at`), the processor ingestion's newest write
    of the charge or of a refund, dispute or balance transaction of it (`ingested_at`), and
    the build that first saw those (`built_at`). The finance marts that hang off charges
    (fct_balance_transactions, rpt_reconciliation) recompute the charges noticed since their
    own last run from here.
    Reads every row version (`*_versions`, no FINAL). Incremental: the versions written since
    its newest stamps, less the lookback; a charge is written again only when its stamps
    moved, so its `built_at` marks real news. -#}
with app_versions as (
    select payment_id, synced_at
    from {{ ref('stg_app__payment_versions') }}
    where {{ stamped_since_last_run('synced_at') }}
    union all
    select payment_id, synced_at
    from {{ ref('stg_app__refund_versions') }}
    where {{ stamped_since_last_run('synced_at') }}
),

app as (
    -- payments and refunds, each by its payment's charge
    select
        {{ charge_key('payments.provider_charge_id', 'payments.payment_id') }} as charge_key,
        max(app_versions.synced_at) as synced_at
    from app_versions
    inner join (
        select payment_id, provider_charge_id
        from {{ ref('stg_app__payments') }}
        {% if incremental_run() %}where payment_id in (select payment_id from app_versions){% endif %}
    ) as payments on payments.payment_id = app_versions.payment_id
    group by charge_key
),

transaction_versions as (
    select source_id, ingested_at
    from {{ ref('stg_stripe__balance_transaction_versions') }}
    where {{ stamped_since_last_run('ingested_at') }}
),

objects as (
    -- the processor objects a balance transaction can come from, with their charge
    select charge_id as object_id, charge_id
    from {{ ref('stg_stripe__charge_versions') }}
    {% if incremental_run() %}where charge_id in (select source_id from transaction_versions){% endif %}
    union all
    select processor_refund_id, assumeNotNull(charge_id)
    from {{ ref('stg_stripe__refund_versions') }}
    where charge_id is not null
    {% if incremental_run() %}
    and processor_refund_id in (select source_id from transaction_versions)
    {% endif %}
    union all
    select dispute_id, assumeNotNull(charge_id)
    from {{ ref('stg_stripe__dispute_versions') }}
    where charge_id is not null
    {% if incremental_run() %}and dispute_id in (select source_id from transaction_versions){% endif %}
),

processor as (
    select charge_id as charge_key, max(ingested_at) as ingested_at
    from (
        select charge_id, ingested_at
        from {{ ref('stg_stripe__charge_versions') }}
        where {{ stamped_since_last_run('ingested_at') }}
        union all
        select assumeNotNull(charge_id), ingested_at
        from {{ ref('stg_stripe__refund_versions') }}
        where {{ stamped_since_last_run('ingested_at') }} and charge_id is not null
        union all
        select assumeNotNull(charge_id), ingested_at
        from {{ ref('stg_stripe__dispute_versions') }}
        where {{ stamped_since_last_run('ingested_at') }} and charge_id is not null
        union all
        select objects.charge_id, transaction_versions.ingested_at
        from transaction_versions
        inner join objects on objects.object_id = transaction_versions.source_id
    )
    group by charge_id
),

changes as (
    select charge_key, max(synced_at) as synced_at, max(ingested_at) as ingested_at
    from (
        select charge_key, synced_at, toDateTime64(0, 6, 'UTC') as ingested_at from app
        union all
        select charge_key, toDateTime64(0, 6, 'UTC'), ingested_at from processor
    )
    group by charge_key
)

{% if incremental_run() %}
-- Only the charges whose stamps moved, with what was known of them before. (The table is
-- streamed past the few changes, whose hash table is the join's right side.)
select
    changes.charge_key as charge_key,
    greatest(changes.synced_at, known.synced_at) as synced_at,
    greatest(changes.ingested_at, known.ingested_at) as ingested_at,
    {{ build_stamp() }} as built_at
from {{ this }} as known
right join changes on changes.charge_key = known.charge_key
where changes.synced_at > known.synced_at or changes.ingested_at > known.ingested_at
{% else %}
select charge_key, synced_at, ingested_at, {{ build_stamp() }} as built_at
from changes
{% endif %}
