-- Sanity check: how many stores have a row for the interval's day.
SELECT COUNT(*) AS stores FROM daily_sales WHERE day = '{{ ds }}'
