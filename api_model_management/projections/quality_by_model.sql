-- Evaluated quality per model: averages of the scores and the share judged low quality.
CREATE OR REPLACE MACRO quality_by_model_for(p_since, p_agent) AS TABLE
    SELECT model_id, provider,
           count(*) AS evaluations,
           avg(quality_score) AS avg_quality,
           avg(completeness) AS avg_completeness,
           avg(relevance) AS avg_relevance,
           avg(coherence) AS avg_coherence,
           avg(CAST(low_quality AS INTEGER)) AS low_quality_share
    FROM amm_evaluated(p_since, p_agent)
    GROUP BY ALL
    ORDER BY model_id NULLS LAST, provider NULLS LAST;

CREATE OR REPLACE VIEW quality_by_model AS SELECT * FROM quality_by_model_for(NULL, NULL);
