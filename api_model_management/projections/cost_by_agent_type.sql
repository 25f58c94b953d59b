-- Spend, requests and tokens per agent type over the whole period (see cost_by_model_day).
CREATE OR REPLACE MACRO cost_by_agent_type_for(p_since, p_agent) AS TABLE
    SELECT agent_type,
           CAST(sum(requests) AS BIGINT) AS requests,
           CAST(sum(failed_requests) AS BIGINT) AS failed_requests,
           sum(cost_usd) AS cost_usd,
           CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
           CAST(sum(output_tokens) AS BIGINT) AS output_tokens
    FROM amm_ledger(p_since, p_agent)
    GROUP BY ALL
    ORDER BY cost_usd DESC, agent_type NULLS LAST;

CREATE OR REPLACE VIEW cost_by_agent_type AS SELECT * FROM cost_by_agent_type_for(NULL, NULL);
