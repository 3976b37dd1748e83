{#- The columns can never hold NULL: ClickHouse rejects NULL on write to a column whose type
    is not Nullable, so the type is the constraint (and dbt's `not_null` on such a column is a
    test that cannot fail). This fails when a listed column is, or becomes, Nullable, or is
    gone: the one way a NULL could get in. One test per model instead of one per column. -#}
{% test never_null(model, column_names) %}
{#- a check of the table's schema, which only a build from scratch changes: the frequent
    incremental build leaves it to the full and daily builds (pipelines/orchestration/
    dbt_builds.py) -#}
{{ config(tags=['column_types']) }}
select column.1 as column_name, column.2 as column_type
from (
    select [
        {%- for column in column_names %}
        ('{{ column }}', toTypeName(any({{ column }}))){{ ',' if not loop.last }}
        {%- endfor %}
    ] as columns
    from {{ model }}
)
array join columns as column
where column_type like '%Nullable(%'
{% endtest %}
