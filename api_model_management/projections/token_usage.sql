-- Tokens the providers billed, per UTC day and model (cache hits excluded: no call was made).
CREATE OR REPLACE MACRO token_usage_for(p_since, p_agent) AS TABLE
    SELECT date,
           model_id, provider,
           count(*) AS requests,
           CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
           CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
           CAST(sum(cached_tokens) AS BIGINT) AS cached_tokens,
           CAST(sum(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
           CAST(sum(input_tokens) + sum(output_tokens) AS BIGINT) AS total_tokens
    FROM amm_completed(p_since, p_agent)
    WHERE NOT cache_hit
    GROUP BY ALL
    ORDER BY date, model_id NULLS LAST, provider NULLS LAST;

CREATE OR REPLACE VIEW token_usage AS SELECT * FROM token_usage_for(NULL, NULL);
