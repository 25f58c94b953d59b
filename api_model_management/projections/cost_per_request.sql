-- Cost of a request's own calls (terminal events; cache hits count, at their cost of 0) per
-- model. avg_cost_usd is exact: the total divided by the count, truncated to 12 decimals.
CREATE OR REPLACE MACRO cost_per_request_for(p_since, p_agent) AS TABLE
    WITH terminal AS (
        SELECT model_id, provider, cost_usd FROM amm_completed(p_since, p_agent)
        UNION ALL
        SELECT model_id, provider, cost_usd FROM amm_failed(p_since, p_agent)
    )
    SELECT model_id, provider,
           count(*) AS requests,
           sum(cost_usd) AS cost_usd,
           CAST(CAST(sum(cost_usd) * 1000000000000 AS HUGEINT) // count(*) AS DECIMAL(38, 0))
               * CAST(0.000000000001 AS DECIMAL(13, 12)) AS avg_cost_usd,
           max(cost_usd) AS max_cost_usd
    FROM terminal
    GROUP BY ALL
    ORDER BY model_id NULLS LAST, provider NULLS LAST;

CREATE OR REPLACE VIEW cost_per_request AS SELECT * FROM cost_per_request_for(NULL, NULL);
