{#- One row per day from 2020 to five years ahead. -#}
select
    toDate('2020-01-01') + number as date_day,
    toYear(date_day) as year,
    toMonth(date_day) as month,
    toDayOfWeek(date_day) as day_of_week,
    toStartOfWeek(date_day, 1) as week_start,
    toStartOfMonth(date_day) as month_start,
    {{ build_stamp() }} as built_at
from numbers(toUInt64(dateDiff('day', toDate('2020-01-01'), today() + 5 * 365)))
