{#- Folders land in their own ClickHouse databases: `staging`, `intermediate`, `marts`
    (not dbt's default `analytics_staging`), so dashboards read `marts.*`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name else target.schema }}
{%- endmacro %}
