{#- Tests of the mart and intermediate models (`meta: {tested_rows: latest_build}` in
    dbt_project.yml) check the rows of their table's latest build (its newest `built_at`):
    every row after a full build, the rows an incremental run wrote after one. Each build
    tests what it writes, so a frequent incremental build does not test millions of rows it
    did not touch; `unique` sees duplicates among them (two builds writing the same key at
    once cannot happen: Dagster runs one dbt build at a time). `--vars '{test_every_row:
    true}'` tests every row (the daily `reconciliation` job does). A test's own `where` still
    applies, as in dbt. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- if config.get('where') -%}
        {%- do conditions.append('(' ~ config.get('where') ~ ')') -%}
    {%- endif -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- if meta.get('tested_rows') == 'latest_build' and not var('test_every_row', false) -%}
        {%- do conditions.append('built_at = ' ~ latest_build_of(relation)) -%}
    {%- endif -%}
    {%- if conditions -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}

{#- The `built_at` of the latest build of `relation` (a mart or intermediate model). In a
    `dbt build` that selected the model, that is this invocation's stamp: the model ran just
    before its tests, and what it wrote carries the stamp (nothing, if it wrote nothing). Else
    the table's newest stamp, which costs a scan of the column. (The models' `built_at` minmax
    index, dbt_project.yml, lets either read only the granules of that build.) -#}
{% macro latest_build_of(relation) -%}
    {%- if execute and flags.WHICH == 'build' -%}
        {%- for node in graph.nodes.values()
            if node.resource_type == 'model' and node.unique_id in selected_resources
            and node.schema == relation.schema and node.alias == relation.identifier -%}
            {{ return(build_stamp()) }}
        {%- endfor -%}
    {%- endif -%}
    {{ return('(select max(built_at) from ' ~ relation ~ ')') }}
{%- endmacro %}

{#- dbt-clickhouse's relationships test with the parent read only for the child's values: the
    same answer, but checking a few new children no longer loads a parent of millions of rows
    whole (an IN on the parent's sorting key reads just the granules that hold them). -#}
{% macro clickhouse__test_relationships(model, column_name, to, field) %}
with child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
),

parent as (
    select {{ field }} as to_field
    from {{ to }}
    where {{ field }} in (select from_field from child)
)

select from_field
from child
where from_field not in (select to_field from parent)
{% endmacro %}
