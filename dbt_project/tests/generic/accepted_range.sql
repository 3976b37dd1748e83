{% test accepted_range(model, column_name, min_value) %}
select * from {{ model }} where {{ column_name }} < {{ min_value }}
{% endtest %}
