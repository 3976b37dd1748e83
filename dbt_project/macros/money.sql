{#- Minor units -> a decimal amount in major units, for presentation only. -#}
{% macro to_major_units(minor, currency) -%}
    toDecimal64({{ minor }}, 2) / multiIf({{ currency }} IN ('JPY', 'KRW', 'VND', 'CLP'), 1, 100)
{%- endmacro %}
