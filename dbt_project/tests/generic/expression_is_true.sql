{#- Rows for which `expression` is false fail the test (as dbt_utils' test of that name). -#}
{% test expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
