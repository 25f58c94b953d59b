-- End-to-end latency of requests a provider answered (cache hits excluded), per model:
-- average, continuous quantiles p50/p95/p99, maximum, and the average time to first token.
CREATE OR REPLACE MACRO latency_by_model_for(p_since, p_agent) AS TABLE
    SELECT model_id, provider, requests, avg_latency_ms,
           q[1] AS p50_latency_ms, q[2] AS p95_latency_ms, q[3] AS p99_latency_ms,
           max_latency_ms, avg_ttft_ms
    FROM (
        SELECT model_id, provider,
               count(*) AS requests,
               avg(latency_ms) AS avg_latency_ms,
               quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q,
               max(latency_ms) AS max_latency_ms,
               avg(time_to_first_token_ms) AS avg_ttft_ms
        FROM amm_completed(p_since, p_agent)
        WHERE NOT cache_hit
        GROUP BY ALL
    )
    ORDER BY model_id NULLS LAST, provider NULLS LAST;

CREATE OR REPLACE VIEW latency_by_model AS SELECT * FROM latency_by_model_for(NULL, NULL);
