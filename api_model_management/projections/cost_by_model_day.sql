-- Spend, requests and tokens per UTC day, model and provider. cost_usd is every spend (requests
-- and judge calls), the same money the budgets count; requests counts terminal events (cache
-- hits included), failed_requests those that ended in RequestFailed.
CREATE OR REPLACE MACRO cost_by_model_day_for(p_since, p_agent) AS TABLE
    SELECT date,
           model_id,
           provider,
           CAST(sum(requests) AS BIGINT) AS requests,
           CAST(sum(failed_requests) AS BIGINT) AS failed_requests,
           sum(cost_usd) AS cost_usd,
           CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
           CAST(sum(output_tokens) AS BIGINT) AS output_tokens
    FROM amm_ledger(p_since, p_agent)
    GROUP BY ALL
    ORDER BY date, model_id NULLS LAST, provider NULLS LAST;

CREATE OR REPLACE VIEW cost_by_model_day AS SELECT * FROM cost_by_model_day_for(NULL, NULL);
