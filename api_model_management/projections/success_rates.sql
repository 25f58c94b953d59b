-- Per model: provider calls (attempts) = successes (RequestCompleted answered by the provider,
-- not the cache) + failures (AttemptFailed, of which transient_failures were retryable);
-- requests_failed counts RequestFailed whose last model it was; failovers counts
-- FailoverTriggered away from it. Rates are shares of attempts (NULL when there were none).
CREATE OR REPLACE MACRO success_rates_for(p_since, p_agent) AS TABLE
    WITH outcomes AS (
        SELECT model_id, provider, 1 AS successes, 0 AS failures, 0 AS transient_failures,
               0 AS requests_failed, 0 AS failovers
        FROM amm_completed(p_since, p_agent) WHERE NOT cache_hit
        UNION ALL
        SELECT model_id, provider, 0, 1, CAST(transient AS INTEGER), 0, 0
        FROM amm_attempts(p_since, p_agent)
        UNION ALL
        SELECT model_id, provider, 0, 0, 0, 1, 0 FROM amm_failed(p_since, p_agent)
        UNION ALL
        SELECT coalesce(model_id, from_model_id), provider, 0, 0, 0, 0, 1
        FROM amm_failovers(p_since, p_agent)
    ),
    totals AS (
        SELECT model_id, provider,
               CAST(sum(successes) + sum(failures) AS BIGINT) AS attempts,
               CAST(sum(successes) AS BIGINT) AS successes,
               CAST(sum(failures) AS BIGINT) AS failures,
               CAST(sum(transient_failures) AS BIGINT) AS transient_failures,
               CAST(sum(requests_failed) AS BIGINT) AS requests_failed,
               CAST(sum(failovers) AS BIGINT) AS failovers
        FROM outcomes
        WHERE model_id IS NOT NULL
        GROUP BY ALL
    )
    SELECT *,
           successes / nullif(attempts, 0) AS success_rate,
           failovers / nullif(attempts, 0) AS failover_rate
    FROM totals
    ORDER BY model_id, provider NULLS LAST;

CREATE OR REPLACE VIEW success_rates AS SELECT * FROM success_rates_for(NULL, NULL);
