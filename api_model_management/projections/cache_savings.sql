-- Exact-match cache effect: completed requests, how many the cache served, the hit rate and the
-- cost the hits saved. One row, or none for an empty log.
CREATE OR REPLACE MACRO cache_savings_for(p_since, p_agent) AS TABLE
    SELECT count(*) AS requests,
           count(*) FILTER (WHERE cache_hit) AS cache_hits,
           count(*) FILTER (WHERE cache_hit) / count(*) AS hit_rate,
           coalesce(sum(saved_cost_usd) FILTER (WHERE cache_hit), CAST(0 AS DECIMAL(38, 12)))
               AS saved_cost_usd
    FROM amm_completed(p_since, p_agent)
    HAVING count(*) > 0;

CREATE OR REPLACE VIEW cache_savings AS SELECT * FROM cache_savings_for(NULL, NULL);
