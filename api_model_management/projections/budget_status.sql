-- Spend per budget scope, key and window, to compare with the configured limits (joined in
-- Python). Scopes as in the CostLedger: global (key '*'), provider, model, agent_type (an empty
-- or missing key skips that scope); windows: the day and the month in the budget's time zone
-- `p_tz`, window_start being that local midnight as an instant. Only positive costs count.
-- The view `budget_status` is in UTC; the Python API passes BudgetSettings.timezone.
--
-- Speed: spend is first summed per UTC quarter hour (every time zone offset and DST change is a
-- whole number of quarter hours, so a quarter hour never straddles a local midnight) and only
-- those sums go through the time zone conversion.
CREATE OR REPLACE MACRO budget_spend_for(p_tz) AS TABLE
    WITH quarters AS (
        SELECT epoch_us(occurred_at) // 900000000 AS quarter,
               nullif(provider, '') AS provider, nullif(model_id, '') AS model_id,
               nullif(agent_type, '') AS agent_type,
               sum(cost_usd) AS cost_usd, count(*) AS events
        FROM amm_ledger(NULL, NULL)
        WHERE cost_usd > 0
        GROUP BY ALL
    ),
    spend AS (
        SELECT timezone(p_tz, to_timestamp(quarter * 900)) AS local_time,
               provider, model_id, agent_type, cost_usd, events
        FROM quarters
    ),
    keyed AS (
        SELECT local_time, cost_usd, events, 'global' AS scope, '*' AS scope_key FROM spend
        UNION ALL
        SELECT local_time, cost_usd, events, 'provider', provider FROM spend
        WHERE provider IS NOT NULL
        UNION ALL
        SELECT local_time, cost_usd, events, 'model', model_id FROM spend
        WHERE model_id IS NOT NULL
        UNION ALL
        SELECT local_time, cost_usd, events, 'agent_type', agent_type FROM spend
        WHERE agent_type IS NOT NULL
    ),
    windowed AS (
        SELECT scope, scope_key, 'day' AS "window", cost_usd, events,
               timezone(p_tz, date_trunc('day', local_time)) AS window_start
        FROM keyed
        UNION ALL
        SELECT scope, scope_key, 'month', cost_usd, events,
               timezone(p_tz, date_trunc('month', local_time))
        FROM keyed
    )
    SELECT scope, scope_key, "window", window_start,
           sum(cost_usd) AS spent_usd,
           CAST(sum(events) AS BIGINT) AS events
    FROM windowed
    GROUP BY ALL
    ORDER BY "window", window_start, scope, scope_key;

CREATE OR REPLACE VIEW budget_status AS SELECT * FROM budget_spend_for('UTC');
