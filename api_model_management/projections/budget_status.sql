-- Spend per budget scope, key and window, to compare with the configured limits (joined in
-- Python). Scopes as in the CostLedger: global (key '*'), provider, model, agent_type (an empty
-- or missing key skips that scope); windows: the day and the month in the budget's time zone
-- `p_tz`, window_start being that local midnight as an instant. Only positive costs count.
-- The view `budget_status` is in UTC; the Python API passes BudgetSettings.timezone.
CREATE OR REPLACE MACRO budget_spend_for(p_tz) AS TABLE
    WITH spend AS (
        SELECT occurred_at, cost_usd, nullif(provider, '') AS provider,
               nullif(model_id, '') AS model_id, nullif(agent_type, '') AS agent_type
        FROM amm_ledger(NULL, NULL)
        WHERE cost_usd > 0
    ),
    keyed AS (
        SELECT occurred_at, cost_usd, 'global' AS scope, '*' AS scope_key FROM spend
        UNION ALL
        SELECT occurred_at, cost_usd, 'provider', provider FROM spend WHERE provider IS NOT NULL
        UNION ALL
        SELECT occurred_at, cost_usd, 'model', model_id FROM spend WHERE model_id IS NOT NULL
        UNION ALL
        SELECT occurred_at, cost_usd, 'agent_type', agent_type FROM spend
        WHERE agent_type IS NOT NULL
    ),
    windowed AS (
        SELECT scope, scope_key, 'day' AS "window", cost_usd,
               timezone(p_tz, date_trunc('day', timezone(p_tz, occurred_at))) AS window_start
        FROM keyed
        UNION ALL
        SELECT scope, scope_key, 'month', cost_usd,
               timezone(p_tz, date_trunc('month', timezone(p_tz, occurred_at)))
        FROM keyed
    )
    SELECT scope, scope_key, "window", window_start,
           sum(cost_usd) AS spent_usd,
           count(*) AS events
    FROM windowed
    GROUP BY ALL
    ORDER BY "window", window_start, scope, scope_key;

CREATE OR REPLACE VIEW budget_status AS SELECT * FROM budget_spend_for('UTC');
