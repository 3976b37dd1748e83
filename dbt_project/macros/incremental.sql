{#- Incremental models recompute what changed since their last run: the keys whose source
    rows were (re)written after the newest stamp the model holds, less a lookback for rows
    that reach ClickHouse late (the CDC relay and the processor ingestion can deliver out of
    order). `stamp_column` is one of the model's own columns (`synced_at`: the CDC relay's
    clock; `ingested_at`: the processor ingestion's). -#}
{% macro changed_since(stamp_column) -%}
    (select max({{ stamp_column }}) from {{ this }})
        - interval {{ var('incremental_lookback_minutes', 60) }} minute
{%- endmacro %}

{#- Reconciliation rows hang off a processor charge (a payment's, and the refunds and disputes
    of it); a succeeded payment that names no charge gets a key of its own. -#}
{% macro charge_key(charge_id, payment_id) -%}
    coalesce({{ charge_id }}, concat('payment:', toString({{ payment_id }})))
{%- endmacro %}

{#- The charges whose payment, refunds, disputes or balance transactions changed since the
    model's last run (`int_charges_changed`; the model keeps each row's `charge_noticed_at`). -#}
{% macro charges_noticed_since_last_run() -%}
    select charge_key from {{ ref('int_charges_changed') }}
    where built_at > (
        select ifNull(max(charge_noticed_at), toDateTime64(0, 6, 'UTC')) from {{ this }}
    )
{%- endmacro %}

{#- The processor objects (charges, refunds, disputes) of the given charge keys, by id. -#}
{% macro objects_of_charges(charge_keys) -%}
    (
        select charge_key as object_id from ({{ charge_keys }})
        union distinct
        select processor_refund_id from {{ ref('stg_stripe__refund_versions') }}
        where charge_id in ({{ charge_keys }})
        union distinct
        select dispute_id from {{ ref('stg_stripe__dispute_versions') }}
        where charge_id in ({{ charge_keys }})
    )
{%- endmacro %}

{#- Orders whose row or money (ledger entries) the CDC relay wrote since `since`. -#}
{% macro orders_changed_since(since) -%}
    select order_id from {{ ref('stg_app__order_versions') }} where synced_at > {{ since }}
    union distinct
    select order_id from {{ ref('stg_app__ledger_entry_versions') }} where synced_at > {{ since }}
{%- endmacro %}

{#- `is_incremental()`, also where a unit test renders the model with no relation of its own
    (there it would fail): unit tests exercise the full build. -#}
{% macro incremental_run() -%}
    {{ return(this.schema and is_incremental()) }}
{%- endmacro %}

{#- A filter for the rows stamped since the model's cursor in an incremental run; `true` in a
    full build. -#}
{% macro stamped_since_last_run(stamp) -%}
    {%- if incremental_run() -%}
        {{ stamp }} > {{ changed_since(stamp) }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- When this dbt invocation started (UTC). Every row a mart or intermediate model writes
    carries it as `built_at`: the rows of a table's latest build are those with its newest
    `built_at`. Tests check those (`get_where_subquery`), and incremental models downstream
    find their changed input through it. -#}
{% macro build_stamp() -%}
    toDateTime64('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}', 6, 'UTC')
{%- endmacro %}
