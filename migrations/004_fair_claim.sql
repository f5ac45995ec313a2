-- A fairer, cheaper claim.
--
-- 1. Round robin across claims, not only within one. The claim used to order each (batch, org)'s
--    first candidate by age: the same oldest organizations won every claim, so a batch over 200
--    organizations ran org 0's jobs until its rate limit stopped them before org 199 had a single
--    call, and lanes churned on throttled orgs. Now a (batch, org) with fewer jobs running comes
--    first, then the one whose last job started longest ago (never: first). The counters keep
--    when each (batch, org) last started a job, so this costs no extra write.
-- 2. Candidates are locked only in the (batch, org)s that can win this claim (about twice the
--    limit of them), not in every (batch, org) with queued work: a claim over 200 orgs locked
--    400 rows to return a handful. When that comes up short, a second pass looks at them all.
-- 3. p_skip_orgs: orgs this worker knows to be throttled right now (its rate-limit gate is
--    closed: Atlas said its bucket is empty); their jobs would only be handed back.
-- 4. One worker process per org at a time: a worker does not start an org whose jobs another
--    live worker is running. Each process paces an org from Atlas's answers to its own calls;
--    two processes spending one bucket each believed it had the tokens the other took, and sent
--    calls into a Retry-After the other was given. Claims take turns (an advisory lock), so two
--    workers cannot both start the same free org. A worker limited to another batch
--    (`worker --batch`) holds the org only until this batch's due job has waited 30 s: it would
--    never serve that job, and the org's other batches must not starve behind a long one.
--
-- Everything else is as in 003: eligibility inside the locked subqueries, pinned planner
-- settings, the paused-org probe.

ALTER TABLE secret_job_counts ADD COLUMN last_started_at timestamptz;
-- The batch the claiming worker was limited to (`worker --batch`; NULL: any batch): an org run by
-- a worker that cannot take this batch does not keep this batch's jobs of the org waiting.
ALTER TABLE secret_jobs ADD COLUMN lease_scope text;

CREATE OR REPLACE FUNCTION secret_job_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO secret_job_counts AS c (batch, org_id, state, n, last_started_at)
        SELECT batch, org_id, state, count(*), CASE WHEN state = 'running' THEN now() END
        FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (batch, org_id, state) DO UPDATE
        SET n = c.n + EXCLUDED.n, last_started_at = coalesce(EXCLUDED.last_started_at, c.last_started_at);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO secret_job_counts AS c (batch, org_id, state, n)
        SELECT batch, org_id, state, -count(*) FROM old_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (batch, org_id, state) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO secret_job_counts AS c (batch, org_id, state, n, last_started_at)
        SELECT batch, org_id, state, sum(d), CASE WHEN state = 'running' AND sum(d) > 0 THEN now() END
        FROM (
            SELECT batch, org_id, state, 1 AS d FROM new_rows
            UNION ALL
            SELECT batch, org_id, state, -1 FROM old_rows) deltas
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (batch, org_id, state) DO UPDATE
        SET n = c.n + EXCLUDED.n, last_started_at = coalesce(EXCLUDED.last_started_at, c.last_started_at);
    END IF;
    RETURN NULL;
END $$;

DROP FUNCTION claim_secret_jobs(text, integer, double precision, text, text, integer, double precision);

-- One pass of the claim over the first p_take_pairs (batch, org)s in round-robin order, taking up
-- to p_per_pair candidates from each. claim_secret_jobs() below runs it once or twice.
CREATE FUNCTION claim_secret_jobs_among(
    p_owner text, p_limit integer, p_lease_seconds double precision, p_orphan_policy text,
    p_batch text, p_org_cap integer, p_org_rate double precision, p_skip_orgs text[],
    p_take_pairs integer, p_per_pair integer)
RETURNS SETOF secret_jobs
LANGUAGE plpgsql
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off
AS $$
BEGIN
    RETURN QUERY
    WITH pairs AS (
        SELECT c.batch, c.org_id, coalesce(r.n, 0) AS running, r.last_started_at, top.priority AS top_priority
        FROM secret_job_counts c
        LEFT JOIN secret_job_counts r ON r.batch = c.batch AND r.org_id = c.org_id AND r.state = 'running'
        -- The (batch, org)'s most urgent due job, read without a lock (priorities win).
        LEFT JOIN LATERAL (
            SELECT j.priority, j.run_at FROM secret_jobs j
            WHERE j.batch = c.batch AND j.org_id = c.org_id AND j.state = 'queued' AND j.run_at <= now()
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1) top ON true
        WHERE c.state = 'queued' AND c.n > 0 AND (p_batch IS NULL OR c.batch = p_batch)
          AND (p_skip_orgs IS NULL OR c.org_id <> ALL (p_skip_orgs))
          -- One worker process per org at a time: its gate then sees every call spent from the
          -- org's bucket, and no other process sends into a Retry-After it was given.
          AND NOT EXISTS (SELECT 1 FROM secret_jobs o
                          WHERE o.state = 'running' AND o.org_id = c.org_id
                            AND o.lease_owner <> p_owner AND o.lease_expires_at > now()
                            AND (o.lease_scope IS NULL OR o.lease_scope = c.batch
                                 -- A worker limited to another batch holds the org too, but
                                 -- not once this batch's job has waited 30 s for it.
                                 OR top.run_at > now() - interval '30 seconds'))
          AND NOT EXISTS (SELECT 1 FROM secret_org_pacing p
                          WHERE p.org_id = c.org_id
                            AND (p.not_before > now()
                                 OR (p.paused_reason IS NOT NULL AND p.paused_at > now() - interval '5 minutes')
                                 OR (p_org_rate IS NOT NULL AND p.next_slot_at > now())))
    ), chosen_pairs AS MATERIALIZED (
        SELECT * FROM pairs WHERE top_priority IS NOT NULL
        ORDER BY top_priority DESC, running, last_started_at NULLS FIRST, org_id, batch
        LIMIT p_take_pairs
    ), locked_pairs AS MATERIALIZED (
        -- The (batch, org)'s queued counter, which this claim's update will change, locked now
        -- and skipped when another transaction holds it (a producer's open transaction that
        -- enqueued into it, a rescue): the claim never waits on it, under the claim lock.
        SELECT cp.* FROM chosen_pairs cp
        JOIN secret_job_counts k ON k.batch = cp.batch AND k.org_id = cp.org_id AND k.state = 'queued'
        FOR UPDATE OF k SKIP LOCKED
    ), candidates AS MATERIALIZED (
        SELECT x.*, pr.running AS pair_running, pr.last_started_at AS pair_last_started FROM locked_pairs pr, LATERAL (
            SELECT j.id, j.org_id, j.client_id, j.batch, j.priority, j.run_at
            FROM secret_jobs j
            WHERE j.batch = pr.batch AND j.org_id = pr.org_id
              AND j.state = 'queued' AND j.run_at <= now()
              AND NOT EXISTS (SELECT 1 FROM secret_jobs r
                              WHERE r.state = 'running' AND r.org_id = j.org_id AND r.client_id = j.client_id)
              -- Another job of the account has an attempt whose outcome is unknown: it settles first,
              -- so that a secret it finds unaccounted for can only be its own.
              AND NOT EXISTS (SELECT 1 FROM secret_jobs u
                              WHERE u.state = 'queued' AND u.needs_reconcile AND u.id <> j.id
                                AND u.org_id = j.org_id AND u.client_id = j.client_id)
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT p_per_pair
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
        -- Priority, then round robin: the k-th job of a (batch, org) with n running counts as its
        -- (n + k)-th; among equals, the (batch, org) served longest ago first.
        ORDER BY r.priority DESC, r.pair_running + r.batch_rank, r.pair_last_started NULLS FIRST,
                 r.org_rank, r.run_at, r.id
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
        started_at = coalesce(j.started_at, now()), updated_at = now(), orphan_policy = p_orphan_policy,
        lease_scope = p_batch
    FROM chosen
    WHERE j.id = chosen.id
    RETURNING j.*;
END $$;

CREATE FUNCTION claim_secret_jobs(
    p_owner text, p_limit integer, p_lease_seconds double precision, p_orphan_policy text,
    p_batch text DEFAULT NULL, p_org_cap integer DEFAULT NULL, p_org_rate double precision DEFAULT NULL,
    p_skip_orgs text[] DEFAULT NULL)
RETURNS SETOF secret_jobs
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    v_pairs integer;
    v_take_pairs integer;
    v_got integer;
    v_left integer;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RETURN;
    END IF;
    -- Claims take turns (the lock is the transaction's: one statement), so that two workers
    -- claiming at once cannot both start the same free org, nor together pass a cap or a rate;
    -- each claim's queries after it see the claims before it.
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || ': atlas-secrets claim'));
    SELECT count(*) INTO v_pairs FROM secret_job_counts
    WHERE state = 'queued' AND n > 0 AND (p_batch IS NULL OR batch = p_batch);
    IF v_pairs = 0 THEN
        RETURN;
    END IF;
    -- Candidates from about twice as many (batch, org)s as the claim can start (a (batch, org)
    -- may turn out to have nothing eligible), at least two from each.
    v_take_pairs := least(v_pairs, greatest(8, 2 * p_limit));
    RETURN QUERY SELECT * FROM claim_secret_jobs_among(
        p_owner, p_limit, p_lease_seconds, p_orphan_policy, p_batch, p_org_cap, p_org_rate, p_skip_orgs,
        v_take_pairs, least(p_limit, greatest(2, ceil(4.0 * p_limit / v_take_pairs)::integer)));
    GET DIAGNOSTICS v_got = ROW_COUNT;
    -- Short, and (batch, org)s were left out: the ones looked at may have had only blocked jobs
    -- (their account runs a job of another batch, or settles an unknown outcome), which their
    -- running count does not show. A second pass looks at all of them, so a runnable job is never
    -- hidden behind blocked ones; it costs a full claim only when the first came up short.
    v_left := p_limit - v_got;
    IF v_left > 0 AND v_take_pairs < v_pairs THEN
        RETURN QUERY SELECT * FROM claim_secret_jobs_among(
            p_owner, v_left, p_lease_seconds, p_orphan_policy, p_batch, p_org_cap, p_org_rate, p_skip_orgs,
            v_pairs, least(v_left, greatest(2, ceil(4.0 * v_left / v_pairs)::integer)));
    END IF;
END $$;
