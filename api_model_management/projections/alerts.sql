-- What needs attention, oldest first: budget thresholds crossed (BudgetAlert), performance
-- alerts (a degradation cleared is severity 'info'), rate limits being approached, and providers
-- or models turning unhealthy. With an agent filter, alerts not tied to an agent type
-- (agent_type NULL) are kept.
CREATE OR REPLACE MACRO alerts_for(p_since, p_agent) AS TABLE
    WITH raised AS (
        SELECT event_id, occurred_at, agent_type, model_id, provider,
               'budget' AS category, "window" || '_budget' AS kind,
               CASE WHEN threshold >= 1 THEN 'critical' ELSE 'warning' END AS severity,
               scope || ':' || scope_key AS subject,
               format('{} budget of {} USD at {}% ({} USD spent)', "window",
                      CAST(round(limit_usd, 4) AS VARCHAR), CAST(round(threshold * 100) AS INTEGER),
                      CAST(round(spent_usd, 4) AS VARCHAR)) AS message
        FROM budget_alert
        UNION ALL
        SELECT event_id, occurred_at, agent_type, model_id, provider,
               'performance', kind, CASE WHEN cleared THEN 'info' ELSE 'warning' END,
               coalesce(model_id, provider, '*'),
               coalesce(nullif(message, ''),
                        format('{} = {} (threshold {})', metric, value, threshold))
        FROM performance_alert
        UNION ALL
        SELECT event_id, occurred_at, agent_type, model_id, provider,
               'rate_limit', 'approaching_' || limit_type, 'warning',
               coalesce(model_id, provider, '*'),
               format('{} {} of {} used', limit_type, used, "limit")
        FROM rate_limit_hit
        WHERE kind = 'approaching'
        UNION ALL
        SELECT event_id, occurred_at, agent_type, model_id, provider,
               'health', 'unhealthy', 'critical',
               coalesce(model_id, provider, '*'),
               format('{} -> unhealthy{}', from_state,
                      CASE WHEN reason = '' THEN '' ELSE ': ' || reason END)
        FROM health_changed
        WHERE to_state = 'unhealthy'
    )
    SELECT occurred_at, category, kind, severity, subject, message,
           provider, model_id, agent_type, event_id
    FROM raised
    WHERE (p_since IS NULL OR occurred_at >= p_since)
      AND (p_agent IS NULL OR agent_type IS NULL OR agent_type = p_agent)
    ORDER BY occurred_at, event_id;

CREATE OR REPLACE VIEW alerts AS SELECT * FROM alerts_for(NULL, NULL);
