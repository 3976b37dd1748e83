{#- A balance transaction whose source is a charge, refund or dispute the processor listed
    names that charge (fct_balance_transactions reads objects only for the charges it
    recomputes: a transaction recomputed without its charge would lose its payment).
    Checks the table's latest build, or every row with `--vars '{test_every_row: true}'`. -#}
{#- In Dagster, a check of fct_balance_transactions -#}
{{ config(meta={'dagster': {'ref': {'name': 'fct_balance_transactions'}}}) }}
with unlinked as (
    select balance_transaction_id, source_id
    from {{ ref('fct_balance_transactions') }}
    where charge_id is null
    {% if not var('test_every_row', false) %}
        and built_at = {{ latest_build_of(ref('fct_balance_transactions')) }}
    {% endif %}
)

select balance_transaction_id, source_id
from unlinked
where source_id in (
    select charge_id from {{ ref('stg_stripe__charge_versions') }}
    where charge_id in (select source_id from unlinked)
    union all
    select processor_refund_id from {{ ref('stg_stripe__refund_versions') }}
    where processor_refund_id in (select source_id from unlinked) and charge_id is not null
    union all
    select dispute_id from {{ ref('stg_stripe__dispute_versions') }}
    where dispute_id in (select source_id from unlinked) and charge_id is not null
)
