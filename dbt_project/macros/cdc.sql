{#- The live rows of a CDC raw table: PeerDB's own reading (latest version, not deleted). -#}
{% macro cdc_live(source_name, table_name) -%}
    (select * from {{ source(source_name, table_name) }} final where _peerdb_is_deleted = 0)
{%- endmacro %}
