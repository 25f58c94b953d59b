-- Shared sources of the projections (loaded first). Every projection is a table macro
-- `<name>_for(p_since, p_agent)` -- `p_since` a TIMESTAMPTZ or NULL (no lower bound), `p_agent`
-- an agent type or NULL (all) -- bound as SQL parameters by the Python API, plus a view `<name>`
-- over the whole log (`<name>_for(NULL, NULL)`). They read the per-event-type views
-- (`request_completed`, ...) that `projections._duckdb.connect` creates.

CREATE OR REPLACE MACRO amm_completed(p_since, p_agent) AS TABLE
    SELECT * FROM request_completed
    WHERE (p_since IS NULL OR occurred_at >= p_since) AND (p_agent IS NULL OR agent_type = p_agent);

CREATE OR REPLACE MACRO amm_failed(p_since, p_agent) AS TABLE
    SELECT * FROM request_failed
    WHERE (p_since IS NULL OR occurred_at >= p_since) AND (p_agent IS NULL OR agent_type = p_agent);

CREATE OR REPLACE MACRO amm_attempts(p_since, p_agent) AS TABLE
    SELECT * FROM attempt_failed
    WHERE (p_since IS NULL OR occurred_at >= p_since) AND (p_agent IS NULL OR agent_type = p_agent);

CREATE OR REPLACE MACRO amm_failovers(p_since, p_agent) AS TABLE
    SELECT * FROM failover_triggered
    WHERE (p_since IS NULL OR occurred_at >= p_since) AND (p_agent IS NULL OR agent_type = p_agent);

CREATE OR REPLACE MACRO amm_evaluated(p_since, p_agent) AS TABLE
    SELECT * FROM response_evaluated
    WHERE (p_since IS NULL OR occurred_at >= p_since) AND (p_agent IS NULL OR agent_type = p_agent);

CREATE OR REPLACE MACRO amm_feedback(p_since, p_agent) AS TABLE
    SELECT * FROM feedback_recorded
    WHERE (p_since IS NULL OR occurred_at >= p_since) AND (p_agent IS NULL OR agent_type = p_agent);

-- Every spend, one row per event that carries cost_usd: the terminal events of requests and the
-- FeedbackRecorded of judge calls. A judge call's cost belongs to the judge model (its provider
-- is kept only when the judge is the rated model), as in the CostLedger's fold. Cache hits count
-- as requests but their token counts do not (no provider call was made). `date` is the log's
-- partition: the UTC date of occurred_at.
CREATE OR REPLACE MACRO amm_ledger(p_since, p_agent) AS TABLE
    SELECT occurred_at, date, agent_type, model_id, provider, cost_usd,
           CASE WHEN cache_hit THEN 0 ELSE input_tokens END AS input_tokens,
           CASE WHEN cache_hit THEN 0 ELSE output_tokens END AS output_tokens,
           1 AS requests, 0 AS failed_requests
    FROM amm_completed(p_since, p_agent)
    UNION ALL
    SELECT occurred_at, date, agent_type, model_id, provider, cost_usd, 0, 0, 1, 1
    FROM amm_failed(p_since, p_agent)
    UNION ALL
    SELECT occurred_at, date, agent_type,
           coalesce(nullif(judge_model_id, ''), model_id) AS model_id,
           CASE WHEN nullif(judge_model_id, '') IS NULL OR judge_model_id = model_id THEN provider END,
           cost_usd, 0, 0, 0, 0
    FROM amm_feedback(p_since, p_agent);
