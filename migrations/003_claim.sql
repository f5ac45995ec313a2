-- The claim, as one function: one statement, a lease from the database clock, a fresh attempt.
--
-- Eligibility (queued, due, account not already running, org not throttled or paused) is checked
-- inside the locked, materialized subquery, which walks the claim index in order and stops after
-- p_scan rows: the claim never returns more than p_limit, and never sorts the queue, whatever the
-- planner's statistics say (sort, bitmap and sequential scans are off inside this function only;
-- a fresh table with no ANALYZE otherwise gets a plan that sorts every queued row).
--
-- Among the candidates: one job per service account; priorities first; then batches and
-- organizations interleaved (each org's and batch's first job before anyone's second), then age.
CREATE FUNCTION claim_secret_jobs(
    p_owner text, p_limit integer, p_lease_seconds double precision, p_orphan_policy text,
    p_batch text DEFAULT NULL, p_org_cap integer DEFAULT NULL, p_scan integer DEFAULT NULL)
RETURNS SETOF secret_jobs
LANGUAGE sql
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off
AS $$
    WITH candidates AS MATERIALIZED (
        SELECT j.id, j.org_id, j.client_id, j.batch, j.priority, j.run_at
        FROM secret_jobs j
        WHERE j.state = 'queued' AND j.run_at <= now()
          AND (p_batch IS NULL OR j.batch = p_batch)
          AND NOT EXISTS (SELECT 1 FROM secret_jobs r
                          WHERE r.state = 'running' AND r.org_id = j.org_id AND r.client_id = j.client_id)
          AND NOT EXISTS (SELECT 1 FROM secret_org_pacing p
                          WHERE p.org_id = j.org_id AND (p.not_before > now() OR p.paused_reason IS NOT NULL))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT coalesce(p_scan, greatest(p_limit * 4, 32))
        FOR UPDATE OF j SKIP LOCKED
    ), one_per_account AS (
        SELECT DISTINCT ON (org_id, client_id) * FROM candidates
        ORDER BY org_id, client_id, priority DESC, run_at, id
    ), ranked AS (
        SELECT c.*,
               row_number() OVER (PARTITION BY org_id ORDER BY priority DESC, run_at, id) AS org_rank,
               row_number() OVER (PARTITION BY org_id, batch ORDER BY priority DESC, run_at, id) AS batch_rank,
               CASE WHEN p_org_cap IS NULL THEN 0
                    ELSE (SELECT count(*) FROM secret_jobs r WHERE r.state = 'running' AND r.org_id = c.org_id)
               END AS org_running
        FROM one_per_account c
    ), chosen AS (
        SELECT id FROM ranked
        WHERE p_org_cap IS NULL OR org_rank + org_running <= p_org_cap
        ORDER BY priority DESC, batch_rank, org_rank, run_at, id
        LIMIT p_limit
    )
    UPDATE secret_jobs j
    SET state = 'running', attempts = j.attempts + 1, lease_owner = p_owner,
        lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        started_at = coalesce(j.started_at, now()), updated_at = now(), orphan_policy = p_orphan_policy
    FROM chosen
    WHERE j.id = chosen.id
    RETURNING j.*
$$;
