-- The claim, as one function called in one statement: a lease from the database clock, a new
-- attempt, at most p_limit jobs.
--
-- Fairness: candidates are taken per (batch, organization) with queued work (from the counters),
-- a few from each, walking the claim index in order; then one job per service account, and the
-- order is: priority first, then each (batch, org)'s first job before anyone's second, then age.
-- A 10,000-job batch for one org cannot starve a 10-job batch of another org, nor another batch.
--
-- Eligibility (queued, due, account not already running, org not throttled, paused or paced) is
-- checked inside the locked subqueries, which stop after a few rows each: the claim never returns
-- more than p_limit, and never sorts the queue, whatever the planner's statistics say (sort,
-- bitmap and sequential scans are off inside this function only; without them a fresh table that
-- was never ANALYZEd got a plan that sorted every queued row).
--
-- A paused org (its credential was refused) is tried again 5 minutes after the pause, with one
-- job: its success lifts the pause, its failure starts it again; no attempt is spent either way.
--
-- --per-org-concurrency (p_org_cap) and --org-rate (p_org_rate, jobs started per second per org)
-- hold across every worker: when either is set, claims take a transaction-level advisory lock, so
-- each claim sees the running jobs and paced slots of the claims before it (a fresh snapshot per
-- statement in PL/pgSQL); the rate's slots are reserved with an upsert that re-checks the slot.
CREATE FUNCTION claim_secret_jobs(
    p_owner text, p_limit integer, p_lease_seconds double precision, p_orphan_policy text,
    p_batch text DEFAULT NULL, p_org_cap integer DEFAULT NULL, p_org_rate double precision DEFAULT NULL)
RETURNS SETOF secret_jobs
LANGUAGE plpgsql
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off
AS $$
DECLARE
    v_pairs integer;
    v_per_pair integer;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RETURN;
    END IF;
    IF p_org_cap IS NOT NULL OR p_org_rate IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('atlas-secrets claim'));
    END IF;
    SELECT count(*) INTO v_pairs FROM secret_job_counts
    WHERE state = 'queued' AND n > 0 AND (p_batch IS NULL OR batch = p_batch);
    IF v_pairs = 0 THEN
        RETURN;
    END IF;
    -- Enough candidates to fill the claim, and at least two per (batch, org).
    v_per_pair := least(p_limit, greatest(2, ceil(4.0 * p_limit / v_pairs)::integer));

    RETURN QUERY
    WITH pairs AS (
        SELECT c.batch, c.org_id FROM secret_job_counts c
        WHERE c.state = 'queued' AND c.n > 0 AND (p_batch IS NULL OR c.batch = p_batch)
          AND NOT EXISTS (SELECT 1 FROM secret_org_pacing p
                          WHERE p.org_id = c.org_id
                            AND (p.not_before > now()
                                 OR (p.paused_reason IS NOT NULL AND p.paused_at > now() - interval '5 minutes')
                                 OR (p_org_rate IS NOT NULL AND p.next_slot_at > now())))
    ), candidates AS MATERIALIZED (
        SELECT x.* FROM pairs, LATERAL (
            SELECT j.id, j.org_id, j.client_id, j.batch, j.priority, j.run_at
            FROM secret_jobs j
            WHERE j.batch = pairs.batch AND j.org_id = pairs.org_id
              AND j.state = 'queued' AND j.run_at <= now()
              AND NOT EXISTS (SELECT 1 FROM secret_jobs r
                              WHERE r.state = 'running' AND r.org_id = j.org_id AND r.client_id = j.client_id)
              -- Another job of the account has an attempt whose outcome is unknown: it settles first,
              -- so that a secret it finds unaccounted for can only be its own.
              AND NOT EXISTS (SELECT 1 FROM secret_jobs u
                              WHERE u.state = 'queued' AND u.needs_reconcile AND u.id <> j.id
                                AND u.org_id = j.org_id AND u.client_id = j.client_id)
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT v_per_pair
            FOR UPDATE OF j SKIP LOCKED
        ) x
    ), one_per_account AS (
        SELECT DISTINCT ON (org_id, client_id) * FROM candidates
        ORDER BY org_id, client_id, priority DESC, run_at, id
    ), ranked AS (
        SELECT c.*,
               row_number() OVER (PARTITION BY c.org_id ORDER BY c.priority DESC, c.run_at, c.id) AS org_rank,
               row_number() OVER (PARTITION BY c.org_id, c.batch ORDER BY c.priority DESC, c.run_at, c.id) AS batch_rank
        FROM one_per_account c
    ), allowed AS (
        SELECT r.* FROM ranked r
        WHERE (p_org_rate IS NULL OR r.org_rank = 1)
          -- A paused org whose pause has run out gets one job: a probe of its credential.
          AND (r.org_rank = 1 OR NOT EXISTS (SELECT 1 FROM secret_org_pacing p
                                             WHERE p.org_id = r.org_id AND p.paused_reason IS NOT NULL))
          AND (p_org_cap IS NULL OR r.org_rank + (
                SELECT coalesce(sum(n), 0) FROM secret_job_counts k
                WHERE k.org_id = r.org_id AND k.state = 'running') <= p_org_cap)
        ORDER BY r.priority DESC, r.batch_rank, r.org_rank, r.run_at, r.id
        LIMIT p_limit
    ), slots AS (
        -- --org-rate: reserve the org's next slot; a slot already taken (by a claim that committed
        -- first) is re-checked by the upsert and not reserved again.
        INSERT INTO secret_org_pacing AS p (org_id, next_slot_at, updated_at)
        SELECT a.org_id, now() + make_interval(secs => 1.0 / p_org_rate), now() FROM allowed a
        WHERE p_org_rate IS NOT NULL
        ON CONFLICT (org_id) DO UPDATE
        SET next_slot_at = greatest(p.next_slot_at, now()) + make_interval(secs => 1.0 / p_org_rate), updated_at = now()
        WHERE p.next_slot_at IS NULL OR p.next_slot_at <= now()
        RETURNING p.org_id
    ), probing AS (
        -- Re-arm the pause while the probe runs: other claims leave the org alone; the probe's
        -- success clears the pause, its failure sets it again.
        UPDATE secret_org_pacing p SET paused_at = now(), updated_at = now()
        WHERE p.paused_reason IS NOT NULL AND p.org_id IN (SELECT a.org_id FROM allowed a)
    ), chosen AS (
        SELECT a.id FROM allowed a
        WHERE p_org_rate IS NULL OR a.org_id IN (SELECT s.org_id FROM slots s)
    )
    UPDATE secret_jobs j
    SET state = 'running', attempts = j.attempts + 1, lease_owner = p_owner,
        lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        started_at = coalesce(j.started_at, now()), updated_at = now(), orphan_policy = p_orphan_policy
    FROM chosen
    WHERE j.id = chosen.id
    RETURNING j.*;
END $$;
